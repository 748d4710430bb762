"""Anthropic adapter: the Messages API with native tool use, via the official SDK."""

from __future__ import annotations

import json
from typing import Any, Literal, assert_never, cast

import anthropic
from anthropic.types import ContentBlockParam, MessageParam, ToolParam
from anthropic.types import Message as WireMessage

from agents.messages import (
    AssistantTurn,
    ChatMessage,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
    UserText,
)
from agents.providers import errors as failures
from agents.providers.remote import RemoteProvider
from agents.providers.retry import (
    DEFAULT_BACKOFF,
    parse_retry_after,
)
from bot.core.backoff import Backoff
from bot.core.errors import ProviderError
from bot.core.redact import Redactor

Role = Literal["user", "assistant"]

# The key of our state in `provider_data`, so that no other adapter's state is mistaken for it.
_DATA_KEY = "anthropic"
_THINKING = ("thinking", "redacted_thinking")


class AnthropicProvider(RemoteProvider):
    """Messages API with tools; owns an `AsyncAnthropic` client whose retries are off."""

    name = "anthropic"
    key_setting = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(api_key, max_retries=max_retries, backoff=backoff)
        # The SDK's own retry loop is off so that every retry goes through call_with_retries.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def _complete_once(self, request: ModelRequest) -> ModelTurn:
        message = await self._create(request)
        try:
            return _turn(message)
        except failures.UNREADABLE as exc:
            raise failures.unreadable("anthropic", exc, self._redactor) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def _create(self, request: ModelRequest) -> WireMessage:
        try:
            return await self._client.messages.create(
                model=request.model,
                system=request.system or anthropic.omit,
                messages=_messages(request.messages),
                tools=[_tool(spec) for spec in request.tools] or anthropic.omit,
                max_tokens=request.max_output_tokens,
                # No temperature: API version 2026-10-21, which this SDK sends, rejects any
                # sampling parameter with a 400, and the SDK no longer accepts one.
            )
        except anthropic.AnthropicError as exc:
            raise _map_error(exc, self._redactor) from _cause(exc)
        except ValueError as exc:  # the SDK parses a 200's body itself: empty or cut short
            raise failures.unreadable("anthropic", exc, self._redactor) from exc


def _map_error(exc: anthropic.AnthropicError, redactor: Redactor) -> ProviderError:
    if isinstance(exc, anthropic.APIStatusError):  # 529 "overloaded" is a 5xx: retryable
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        message = exc.api_message or exc.type or ""
        return failures.http_error(
            "anthropic", exc.status_code, message, redactor, retry_after=retry_after
        )
    if isinstance(exc, anthropic.APIConnectionError):  # also covers APITimeoutError
        return failures.network_error("anthropic", exc)
    return failures.invalid("anthropic", exc, redactor, "error")


def _cause(exc: anthropic.AnthropicError) -> BaseException | None:
    # An HTTP error's text is the server's body, which can echo credentials back; our message
    # is scrubbed, so the chain stops there. Network errors keep their cause for debugging.
    return None if isinstance(exc, anthropic.APIStatusError) else exc


def _messages(messages: tuple[ChatMessage, ...]) -> list[MessageParam]:
    """Convert the history, merging neighbours of the same role.

    The API wants strictly alternating roles, and all results for one assistant turn's tool
    calls in the single user message that follows it.
    """
    turns: list[tuple[Role, list[ContentBlockParam]]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue  # the API rejects empty content
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return [_message(role, blocks) for role, blocks in turns]


def _message(role: Role, blocks: list[ContentBlockParam]) -> MessageParam:
    if role == "user":
        return {"role": "user", "content": blocks}
    return {"role": "assistant", "content": blocks}


def _blocks(message: ChatMessage) -> tuple[Role, list[ContentBlockParam]]:
    match message:
        case UserText():
            return "user", [{"type": "text", "text": message.text}] if message.text else []
        case AssistantTurn():
            return "assistant", _assistant_blocks(message)
        case ToolResult():
            block: ContentBlockParam = {
                "type": "tool_result",
                "tool_use_id": message.call_id,
                "content": message.content,
                "is_error": message.is_error,
            }
            return "user", [block]
        case _:
            assert_never(message)


def _assistant_blocks(turn: AssistantTurn) -> list[ContentBlockParam]:
    """Text, then the tool calls, with the turn's thinking blocks back where they came.

    The API checks the thinking of the assistant turn a tool loop continues from: its blocks
    must come back unchanged, in order, ahead of the tool_use they led to. A turn with neither
    text nor calls is still left out: no tool loop continues from it.
    """
    if not turn.text and not turn.tool_calls:
        return []
    thinking = _thinking(turn.provider_data)
    blocks: list[ContentBlockParam] = thinking.get(0, [])
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for index, call in enumerate(turn.tool_calls, start=1):
        blocks += [_tool_use(call), *thinking.get(index, [])]
    return blocks


def _thinking(provider_data: dict[str, Any] | None) -> dict[int, list[ContentBlockParam]]:
    """The stored thinking blocks, grouped by how many tool calls came before them."""
    grouped: dict[int, list[ContentBlockParam]] = {}
    for entry in (provider_data or {}).get(_DATA_KEY, {}).get("thinking", ()):
        # Stored by _turn from the API's own block, so it already has a param's shape.
        grouped.setdefault(entry["after_calls"], []).append(cast(ContentBlockParam, entry["block"]))
    return grouped


def _tool_use(call: ToolCall) -> ContentBlockParam:
    # `input` must be an object on this wire; a call that did not parse is replayed as empty,
    # and its tool result (the loop's error message) says what was wrong.
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments or {}}


def _tool(spec: ToolSpec) -> ToolParam:
    return {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}


def _turn(message: WireMessage) -> ModelTurn:
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(_call(block.id, block.name, block.input))
        elif block.type in _THINKING:
            # Kept as the API sent it (the signature covers it) and where it sat among the
            # calls, for _assistant_blocks to send back; JSON so the audit log can store it.
            dump = block.model_dump(mode="json", exclude_none=True)
            thinking.append({"after_calls": len(calls), "block": dump})
    return ModelTurn(
        text="".join(texts),
        tool_calls=tuple(calls),
        usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
        model=message.model,
        stop_reason=message.stop_reason or "",
        provider_data={_DATA_KEY: {"thinking": thinking}} if thinking else None,
    )


def _call(call_id: str, name: str, arguments: object) -> ToolCall:
    # The SDK does not validate responses, so `input` is whatever JSON the server sent.
    if isinstance(arguments, dict):
        return ToolCall(call_id, name, arguments)
    return ToolCall(call_id, name, None, raw_arguments=json.dumps(arguments))
