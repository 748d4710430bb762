"""Every stop condition ends in a handoff with its reason: never silence, never a runaway."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from agents.messages import ModelRequest, ModelTurn
from bot.store.models import AgentRun, Conversation, HandoffRecord, OutboxItem
from tests.support.harness import Harness
from tests.support.models import FunctionModel, ScriptedModel, call, turn


async def _handoff_reason(h: Harness, conversation_id: int) -> str:
    async with h.db.transaction() as session:
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.state == "handed_off"
        handoff = (
            await session.execute(
                select(HandoffRecord).where(HandoffRecord.conversation_id == conversation_id)
            )
        ).scalar_one()
        return handoff.reason


async def test_step_cap_hands_off_after_max_steps(harness: Harness) -> None:
    # A model that never stops asking for data: it must be cut off at max_steps (5).
    def endless(request: ModelRequest) -> ModelTurn:
        n = len(request.messages)
        return turn("", call("get_recent_messages", {"n": 1 + n % 40}, id=f"c{n}"))

    model = FunctionModel(endless)
    harness.use_model(model)
    outcome = await harness.answer("hello")
    assert outcome.status == "handed_off"
    assert "step limit" in outcome.reason
    assert len(model.requests) == 5
    assert "step limit" in await _handoff_reason(harness, 1)
    [run] = await harness.rows(AgentRun)
    assert (run.status, run.steps) == ("handed_off", 5)


async def test_token_budget_hands_off_when_exceeded(harness: Harness) -> None:
    await harness.add_agent(name="tester", budget={"max_tokens_per_run": 1000})
    model = ScriptedModel(
        turn("", call("get_contact"), tokens=(600, 100)),
        turn("", call("get_recent_messages"), tokens=(600, 100)),
        turn("never reached"),
    )
    harness.use_model(model)
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off"
    assert "token budget" in outcome.reason
    assert len(model.requests) == 2


async def test_cost_budget_hands_off_when_exceeded(database_url: str) -> None:
    h = Harness(
        database_url,
        default_agent="tester",
        llm_price_input_per_mtok=1000,
        llm_price_output_per_mtok=1000,
    )
    await h.app.start()
    try:
        await h.add_agent(budget={"max_cost_per_run": "0.01"})
        # 10 000 tokens at $1000/Mtok = $10 > $0.01
        h.use_model(ScriptedModel(turn("", call("get_contact"), tokens=(9000, 1000))))
        outcome = await h.answer("hi")
        assert outcome.status == "handed_off"
        assert "cost budget" in outcome.reason
        [run] = await h.rows(AgentRun)
        assert run.cost > 0
    finally:
        await h.app.aclose()


async def test_monthly_ceiling_stops_before_any_model_call(harness: Harness) -> None:
    await harness.add_agent(budget={"monthly_ceiling": "0"})
    model = ScriptedModel()
    harness.use_model(model)
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off"
    assert "monthly spend ceiling" in outcome.reason
    assert model.requests == []


async def test_repeated_identical_tool_call_hands_off(harness: Harness) -> None:
    same = call("get_contact", {})
    model = ScriptedModel(turn("", same), turn("", same), turn("", same), turn("unused"))
    harness.use_model(model)
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off"
    assert "same tool call was repeated" in outcome.reason
    assert len(model.requests) == 3


async def test_wall_clock_timeout_hands_off(database_url: str) -> None:
    h = Harness(database_url, default_agent="tester", run_timeout_seconds=0.2)
    await h.app.start()
    try:
        await h.add_agent()

        async def slow(request: ModelRequest) -> ModelTurn:
            await asyncio.sleep(5)
            return turn("too late")

        h.use_model(FunctionModel(slow))
        outcome = await h.answer("hi")
        assert outcome.status == "handed_off"
        assert "timed out" in outcome.reason
        # The customer is told a person will answer; nothing from the model went out.
        items = await h.rows(OutboxItem, OutboxItem.channel == "console")
        assert [i.author for i in items] == ["system"]
    finally:
        await h.app.aclose()


async def test_provider_failure_hands_off_instead_of_silence(harness: Harness) -> None:
    from bot.core.errors import ProviderError

    def broken(request: ModelRequest) -> ModelTurn:
        raise ProviderError("upstream 503 after retries", retryable=True)

    harness.use_model(FunctionModel(broken))
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off"
    assert "provider" in outcome.reason
    assert harness.channel.delivered, "the customer must hear something"


async def test_empty_answers_twice_hand_off(harness: Harness) -> None:
    harness.use_model(ScriptedModel(turn(""), turn("")))
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off"
    assert "empty" in outcome.reason
