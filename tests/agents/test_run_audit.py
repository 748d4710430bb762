"""Every run leaves a record of what the agent saw, decided and did, without secrets."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from agents.messages import ModelTurn, Usage
from bot.app.audit_view import render_run
from bot.core.logs import configure_logging
from bot.store.audit import verify_chain
from bot.store.models import AgentRun, AuditEvent
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, call, turn

SECRET = "sk-test-THISISASECRETKEY1234567890"


async def test_each_step_is_audited_with_input_answer_tools_tokens_and_latency(
    harness: Harness,
) -> None:
    harness.use_model(
        ScriptedModel(
            turn("", call("get_contact"), tokens=(120, 8)),
            turn("Hello Ann, how can I help?", tokens=(150, 12)),
        )
    )
    outcome = await harness.answer("hi there")
    events = await harness.rows(AuditEvent, AuditEvent.run_id == outcome.run_id)
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started"
    assert kinds[-2:] == ["run_finished", "delivery"]  # the reply's delivery is part of the run
    started = events[0].payload
    assert (started["trigger"], started["started_by"]) == ("inbound", "contact")
    assert started["input"][0]["text"] == "hi there"
    model_calls = [e.payload for e in events if e.kind == "model_call"]
    assert len(model_calls) == 2
    first = model_calls[0]
    assert "Your goal:" in first["system"]
    assert first["messages"][-1] == {"kind": "user", "text": "hi there"}
    assert first["answer"]["tool_calls"][0]["name"] == "get_contact"
    assert first["usage"] == {"input": 120, "output": 8}
    assert isinstance(first["latency_ms"], int)
    second = model_calls[1]  # only what is new since step 1: the call and its result
    assert second["messages_before"] == len(first["messages"])
    assert [m["kind"] for m in second["messages"]] == ["assistant", "tool_result"]
    tool_calls = [e.payload for e in events if e.kind == "tool_call"]
    assert tool_calls[0]["tool"] == "get_contact" and tool_calls[0]["result"]["name"] == "Ann"
    assert tool_calls[1]["tool"] == "send_message"
    assert tool_calls[1]["arguments"]["text"] == "Hello Ann, how can I help?"
    [run] = await harness.rows(AgentRun)
    assert (run.input_tokens, run.output_tokens, run.status) == (270, 20, "finished")
    async with harness.db.transaction() as session:
        text = await render_run(session, run.id)
        count, problems = await verify_chain(session)
    assert "tool get_contact" in text and "model call, step 2" in text
    assert count == len(await harness.rows(AuditEvent)) and problems == []


@pytest.fixture
async def keyed_harness(database_url: str) -> Harness:
    h = Harness(database_url, default_agent="tester", openai_api_key=SECRET)
    await h.app.start()
    await h.add_agent()
    return h


async def test_api_keys_never_reach_the_audit_trail_or_logs(
    keyed_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = keyed_harness
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG", h.app.redactor)
    try:
        leaked = f"my key is {SECRET}"
        h.use_model(
            ScriptedModel(
                turn(leaked, call("get_recent_messages", {"n": 2})),
                turn("", call("finish", {"summary": leaked})),
            )
        )
        outcome = await h.answer(f"hi {SECRET}")
        events = await h.rows(AuditEvent)
        dumped = " ".join(str(e.payload) + e.actor for e in events)
        assert SECRET not in dumped
        assert "[redacted]" in dumped
        assert outcome.status == "finished"
        logged = capsys.readouterr().err
        assert "run " in logged and "[redacted]" in logged
        assert SECRET not in logged
    finally:
        await h.app.aclose()
        root.handlers[:], root.level = saved


async def test_a_call_answered_by_another_model_is_charged_at_that_models_price(
    harness: Harness,
) -> None:
    # As when a fallback provider serves the call: the answer names the model that gave it.
    usage = Usage(1_000_000, 0)
    answered = ModelTurn(text="Hello!", usage=usage, model="gpt-4o-2024-08-06")
    harness.use_model(ScriptedModel(answered))

    outcome = await harness.answer("hi")

    [finished] = await harness.rows(
        AuditEvent, AuditEvent.kind == "run_finished", AuditEvent.run_id == outcome.run_id
    )
    assert Decimal(finished.payload["cost_usd"]) == Decimal("2.50")  # gpt-4o's input price
