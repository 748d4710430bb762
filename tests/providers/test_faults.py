"""Every LLM fault the reliability brief lists, injected over a real socket.

Adapter-level cases run against each real SDK; run-level cases drive the engine with the real
OpenAI adapter. For each fault: the bot keeps running, nothing is lost, and the run either
retries until it gets an answer or hands off with the reason recorded. Faults the contract
suite already covers for every adapter (429 with Retry-After, 5xx, timeouts, unreachable,
arguments that are not an object) are driven through a whole run here.
"""

from __future__ import annotations

import traceback

import pytest

from agents.providers.retry import RetryableProviderError
from bot.store.models import OutboxItem
from tests.providers.app_rig import (
    RETRIES,
    assert_nothing_lost,
    audit,
    handoff_reason,
    stub,
    stubbed_app,
)
from tests.providers.scenario import MAX_RETRIES, Case, ask
from tests.providers.stub_server import Reply, StubServer
from tests.providers.wire import API_KEY, OpenAIWire
from tests.support.harness import Harness

OPENAI = OpenAIWire()
UNREADABLE_BODIES = {
    "empty": "",
    "cut short": '{"id": "chatcmpl-1", "choices": [{"index": 0, "mess',
    "not JSON": "<html><body>502 Bad Gateway</body></html>",
    "null": "null",
    "a list": "[]",
    "an empty object": "{}",
}


@pytest.mark.parametrize("body", list(UNREADABLE_BODIES.values()), ids=list(UNREADABLE_BODIES))
async def test_a_200_that_is_not_an_answer_is_retried_then_reported(case: Case, body: str) -> None:
    case.server.fallback = Reply(raw=body)

    with pytest.raises(RetryableProviderError) as caught:
        await case.provider.complete(ask(case))

    assert "could not be read" in str(caught.value)
    assert len(case.server.received) == MAX_RETRIES + 1
    assert API_KEY not in "".join(traceback.format_exception(caught.value))


async def test_an_unreadable_answer_then_a_good_one_is_a_normal_turn(case: Case) -> None:
    case.server.queue(Reply(raw=""), Reply(body=case.wire.text("Here I am.")))

    turn = await case.provider.complete(ask(case))

    assert turn.text == "Here I am."


async def _keeps_running(h: Harness, server: StubServer) -> None:
    """Once the provider behaves, another contact's message is answered as usual."""
    server.fallback = None
    server.queue(Reply(body=OPENAI.text("Yes, how can I help?")))
    h.channel.delivered.clear()
    outcome = await h.answer("Are you there?", contact="Zed")
    assert outcome.status == "finished"
    assert h.channel.delivered == [("Zed", "Yes, how can I help?")]


async def _authors(h: Harness, channel: str) -> list[str]:
    return [item.author for item in await h.rows(OutboxItem, OutboxItem.channel == channel)]


FAULTS = {
    "429 with Retry-After": (
        Reply(429, OPENAI.error(429, "Rate limit reached"), {"retry-after": "0"}),
        "openai returned HTTP 429",
    ),
    "500": (Reply(500, OPENAI.error(500, "Internal error")), "openai returned HTTP 500"),
    "timeout": (Reply(body=OPENAI.text("Too late."), delay=2.0), "APITimeoutError"),
    "a reply that is not JSON": (Reply(raw="{oops"), "could not be read: JSONDecodeError"),
    "a 200 with an empty body": (Reply(raw=""), "could not be read"),
}


@pytest.mark.parametrize(("reply", "reason"), list(FAULTS.values()), ids=list(FAULTS))
async def test_provider_fault_is_retried_then_handed_off_with_the_reason(
    database_url: str, reply: Reply, reason: str
) -> None:
    async with stub(OPENAI) as server, stubbed_app(database_url, server, request_seconds=0.3) as h:
        server.fallback = reply

        outcome = await h.answer("Hi, I'd like a demo.")

        assert outcome.status == "handed_off"
        assert len(server.received) == RETRIES + 1  # retried, then given up
        assert reason in await handoff_reason(h, 1)
        run = await assert_nothing_lost(h, 1)
        assert reason in (run.stop_reason or "")
        [finished] = await audit(h, "run_finished", run.id)
        assert reason in finished["reason"]
        # The customer hears that a person will answer; staff get the conversation.
        assert await _authors(h, "console") == ["system"]
        assert await _authors(h, "staff")
        await _keeps_running(h, server)


async def test_a_passing_rate_limit_is_waited_out_and_the_run_finishes(database_url: str) -> None:
    async with stub(OPENAI) as server, stubbed_app(database_url, server) as h:
        server.queue(
            Reply(429, OPENAI.error(429, "Rate limit reached"), {"retry-after": "0"}),
            Reply(body=OPENAI.text("Sorry for the wait!")),
        )

        outcome = await h.answer("hello")

        assert outcome.status == "finished"
        assert h.channel.delivered == [("Ann", "Sorry for the wait!")]
        server.assert_complete()


async def test_tool_arguments_that_are_not_json_come_back_to_the_model(database_url: str) -> None:
    async with stub(OPENAI) as server, stubbed_app(database_url, server) as h:
        server.queue(
            Reply(body=OPENAI.tool_calls(("call_1", "get_contact", '{"contact": '))),
            Reply(body=OPENAI.text("Thanks, Ann! How can I help?")),
        )

        outcome = await h.answer("hello")

        assert outcome.status == "finished"
        assert h.channel.delivered == [("Ann", "Thanks, Ann! How can I help?")]
        refused, reply = await audit(h, "tool_call", outcome.run_id)
        assert reply["tool"] == "send_message" and "error" not in reply
        assert refused["error"]["type"] == "invalid_json"
        assert refused["raw_arguments"] == '{"contact": '
        # The model saw its own broken call and what was wrong with it.
        sent = server.received[1].body["messages"]
        assert sent[-2]["tool_calls"][0]["function"]["arguments"] == '{"contact": '
        assert sent[-1]["role"] == "tool" and "invalid_json" in sent[-1]["content"]


async def test_a_call_to_a_tool_that_does_not_exist_comes_back_to_the_model(
    database_url: str,
) -> None:
    async with stub(OPENAI) as server, stubbed_app(database_url, server) as h:
        server.queue(
            Reply(body=OPENAI.tool_calls(("call_1", "delete_all_contacts", {}))),
            Reply(body=OPENAI.text("How can I help?")),
        )

        outcome = await h.answer("hello")

        assert outcome.status == "finished"
        refused, reply = await audit(h, "tool_call", outcome.run_id)
        assert reply["tool"] == "send_message" and "error" not in reply
        assert refused["tool"] == "delete_all_contacts"
        assert refused["error"]["type"] == "unknown_tool"
        result = server.received[1].body["messages"][-1]
        assert result["role"] == "tool" and "unknown_tool" in result["content"]
        assert "send_message" in result["content"]  # told which tools it has


async def test_a_model_that_never_stops_calling_tools_is_cut_off(database_url: str) -> None:
    async with stub(OPENAI) as server, stubbed_app(database_url, server) as h:
        endless = [
            Reply(body=OPENAI.tool_calls((f"call_{n}", "get_recent_messages", {"n": n})))
            for n in range(1, 6)
        ]
        server.queue(*endless)

        outcome = await h.answer("hello")

        assert outcome.status == "handed_off"
        assert "step limit" in await handoff_reason(h, 1)
        assert len(server.received) == 5  # the tester agent's max_steps
        server.assert_complete()
        await assert_nothing_lost(h, 1)
        # Misbehaviour inside valid answers is the model's, not the provider's.
        assert h.app.providers.breaker("openai").failures == 0
        await _keeps_running(h, server)
