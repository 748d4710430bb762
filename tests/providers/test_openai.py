"""What only the OpenAI wire does: arguments as text, refusals beside the content."""

from __future__ import annotations

import pytest

from agents.messages import ToolCall
from tests.providers.scenario import Case, ask
from tests.providers.stub_server import Reply
from tests.providers.wire import OpenAIWire

pytestmark = pytest.mark.parametrize("case", ["openai"], indirect=True)
WIRE = OpenAIWire()


async def test_empty_arguments_text_means_no_arguments(case: Case) -> None:
    # Some OpenAI-compatible servers send "" for a tool without parameters.
    case.server.queue(Reply(body=WIRE.tool_calls(("call_1", "list_stages", ""))))

    turn = await case.provider.complete(ask(case))

    assert turn.tool_calls == (ToolCall("call_1", "list_stages", {}),)


async def test_refusal_is_the_reply_text(case: Case) -> None:
    body = WIRE.text("")
    body["choices"][0]["message"] |= {"content": None, "refusal": "I can't help with that."}
    case.server.queue(Reply(body=body))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "I can't help with that."
