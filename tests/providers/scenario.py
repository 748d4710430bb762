"""The conversation the provider tests send, and the case object each test receives."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from agents.messages import (
    AssistantTurn,
    ChatMessage,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserText,
)
from agents.providers.base import Provider
from tests.providers.stub_server import StubServer
from tests.providers.wire import Wire

MAX_RETRIES = 2


@dataclass
class Case:
    """An adapter under test, the stub it talks to, and how to script that stub."""

    wire: Wire
    server: StubServer
    provider: Provider


SYSTEM = "You qualify inbound leads for Acme CRM."
CONTACT_SCHEMA = {
    "type": "object",
    "properties": {"email": {"type": "string"}},
    "required": ["email"],
    "additionalProperties": False,
}
COMPANY_SCHEMA = {
    "type": "object",
    "properties": {"domain": {"type": "string"}},
    "required": ["domain"],
    "additionalProperties": False,
}
LOOKUP_CONTACT = ToolSpec("lookup_contact", "Find a contact by email.", CONTACT_SCHEMA)
LOOKUP_COMPANY = ToolSpec("lookup_company", "Find a company by domain.", COMPANY_SCHEMA)

HISTORY: tuple[ChatMessage, ...] = (
    UserText("Hi, I'd like a demo."),
    UserText("My email is ana@example.com"),
    AssistantTurn(
        text="Let me look you up.",
        tool_calls=(
            ToolCall("call_1", "lookup_contact", {"email": "ana@example.com"}),
            ToolCall("call_2", "lookup_company", {"domain": "example.com"}),
        ),
    ),
    ToolResult("call_1", "lookup_contact", '{"found": true, "name": "Ana"}'),
    ToolResult("call_2", "lookup_company", "no company with that domain", is_error=True),
)


def ask(case: Case, *messages: ChatMessage) -> ModelRequest:
    return ModelRequest(
        system=SYSTEM,
        messages=messages or (UserText("Hi, I'd like a demo."),),
        tools=(LOOKUP_CONTACT, LOOKUP_COMPANY),
        model=case.wire.model,
        max_output_tokens=256,
        temperature=0.2,
    )


def stored(turn: ModelTurn) -> AssistantTurn:
    """The turn as the loop replays it, after a trip through JSON as the audit log stores it.

    Replaying this copy rather than the turn itself proves `provider_data` needs nothing that
    JSON loses (bytes, tuples, SDK objects).
    """
    dumped = json.loads(json.dumps(asdict(turn.as_assistant())))
    assert dumped["provider_data"] == turn.provider_data  # nothing lost or converted
    calls = tuple(ToolCall(**call) for call in dumped["tool_calls"])
    return AssistantTurn(dumped["text"], calls, dumped["provider_data"])
