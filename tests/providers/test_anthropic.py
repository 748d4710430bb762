"""What only the Anthropic wire needs: strict role alternation, text blocks among others."""

from __future__ import annotations

import pytest

from agents.messages import AssistantTurn, UserText
from tests.providers.scenario import Case, ask
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
