"""What only the Anthropic wire needs: strict role alternation, text blocks among others,
thinking blocks sent back unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from agents.messages import AssistantTurn, ToolCall, ToolResult, UserText
from tests.providers.scenario import Case, ask, stored
from tests.providers.stub_server import Reply
from tests.providers.wire import AnthropicWire

pytestmark = pytest.mark.parametrize("case", ["anthropic"], indirect=True)
WIRE = AnthropicWire()


async def test_reply_is_its_text_blocks_without_the_thinking(case: Case) -> None:
    content = [
        {"type": "thinking", "thinking": "A returning lead.", "signature": "c2ln"},
        {"type": "text", "text": "Welcome back, "},
        {"type": "text", "text": "Ana!"},
    ]
    case.server.queue(Reply(body=WIRE.message(content, "end_turn")))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "Welcome back, Ana!"
    assert turn.stop_reason == "end_turn"


async def test_empty_assistant_turn_is_dropped_and_roles_still_alternate(case: Case) -> None:
    case.server.queue(Reply(body=WIRE.text("Yes, I'm here.")))

    await case.provider.complete(ask(case, UserText("Hi"), AssistantTurn(), UserText("Hello?")))

    assert case.server.received[0].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Hello?"}],
        }
    ]


THINKING = {"type": "thinking", "thinking": "Look the lead up first.", "signature": "EqQBCkYIBxgC"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
LOOKUP = {
    "type": "tool_use",
    "id": "toolu_1",
    "name": "lookup_contact",
    "input": {"email": "ana@example.com"},
}
RESULT = ToolResult("toolu_1", "lookup_contact", '{"found": true}')


async def _continue(case: Case, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer with `content`, run the next step of the tool loop, return the assistant message
    as the second request sent it."""
    case.server.queue(Reply(body=WIRE.message(content, "tool_use")), Reply(body=WIRE.text("Hi")))
    turn = await case.provider.complete(ask(case))
    await case.provider.complete(ask(case, UserText("Hi"), stored(turn), RESULT))
    assistant: dict[str, Any] = case.server.received[1].body["messages"][1]
    assert assistant["role"] == "assistant"
    return list(assistant["content"])


@pytest.mark.parametrize("thinking", [THINKING, REDACTED], ids=["thinking", "redacted"])
async def test_thinking_goes_back_unchanged_before_the_tool_use(
    case: Case, thinking: dict[str, Any]
) -> None:
    text = {"type": "text", "text": "Let me check."}

    sent = await _continue(case, [thinking, text, LOOKUP])

    assert sent == [thinking, text, LOOKUP]


async def test_interleaved_thinking_keeps_its_place_among_the_calls(case: Case) -> None:
    second = {**LOOKUP, "id": "toolu_2", "name": "lookup_company", "input": {"domain": "x.com"}}
    content = [THINKING, LOOKUP, REDACTED, second]

    sent = await _continue(case, content)

    assert sent == content


async def test_turn_the_loop_made_up_goes_back_without_thinking(case: Case) -> None:
    # A plain-text answer is replayed as the send_message call it became, without state.
    reply = ToolCall("reply-1", "send_message", {"text": "Hi Ana!"})
    made_up = AssistantTurn(tool_calls=(reply,))
    case.server.queue(Reply(body=WIRE.text("Done.")))

    await case.provider.complete(
        ask(case, UserText("Hi"), made_up, ToolResult("reply-1", "send_message", "sent"))
    )

    assert case.server.received[0].body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "reply-1", "name": "send_message", "input": {"text": "Hi Ana!"}}
    ]


async def test_answer_without_thinking_has_no_provider_data(case: Case) -> None:
    case.server.queue(Reply(body=WIRE.message([LOOKUP], "tool_use")))

    turn = await case.provider.complete(ask(case))

    assert turn.provider_data is None
