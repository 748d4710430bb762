"""Provider-neutral conversation items.

Channels and the store produce them, providers convert them to and from their wire formats,
and the loop reasons only in these terms. Each is a small frozen dataclass with a `kind` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class UserText:
    """Text from the contact (or, for proactive runs, the trigger's description)."""

    text: str
    kind: Literal["user"] = "user"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for.

    `arguments` is None when the model sent something that is not a JSON object; the raw text
    is kept in `raw_arguments` so the loop can tell the model exactly what was wrong.
    """

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    """What the model said in one turn: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    provider_data: dict[str, Any] | None = None
    """Opaque state the provider needs back verbatim on the next call of the same run
    (Anthropic thinking blocks, Gemini thought signatures); only its own adapter reads it."""
    kind: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The observation fed back to the model for one tool call."""

    call_id: str
    name: str
    content: str
    is_error: bool = False
    kind: Literal["tool_result"] = "tool_result"


ChatMessage = UserText | AssistantTurn | ToolResult


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: name, description and a strict JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one provider call consumed."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a provider needs for one completion."""

    system: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...]
    model: str
    max_output_tokens: int = 1024
    temperature: float | None = None
    """None: the provider's default (reasoning models accept no other)."""
    agent_hints: dict[str, Any] = field(default_factory=dict)
    """Structured facts from the agent definition (questions, triggers) for policy providers;
    network adapters ignore them."""


@dataclass(frozen=True, slots=True)
class ModelTurn:
    """The provider's answer, already converted out of its wire format."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    stop_reason: str = ""
    provider_data: dict[str, Any] | None = None

    def as_assistant(self) -> AssistantTurn:
        return AssistantTurn(self.text, self.tool_calls, self.provider_data)
