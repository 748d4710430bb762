"""A run resumed after its worker died neither replies twice nor gets its caps back."""

from __future__ import annotations

import pytest

from agents.messages import ModelRequest, ModelTurn
from agents.run_state import RunOutcome
from bot.store.inbox import pending_messages
from bot.store.models import AgentRun, AuditEvent, Conversation, Message, OutboxItem
from tests.support.harness import Harness, agent_definition
from tests.support.models import FunctionModel, call, turn


class Killed(BaseException):
    """The worker dies here: nothing after this point in the run happens (like SIGKILL)."""


async def _pending(h: Harness, conversation_id: int) -> list[Message]:
    async with h.db.transaction() as session:
        return await pending_messages(session, conversation_id)


async def _run_until_killed(h: Harness, conversation_id: int) -> None:
    with pytest.raises(Killed):
        await h.app.runner.handle_inbound(conversation_id, await _pending(h, conversation_id))


async def _successor(database_url: str) -> Harness:
    """A new worker on the same database (a restart)."""
    h = Harness(database_url, default_agent="tester", run_timeout_seconds=5)
    await h.app.start()
    return h


async def test_a_run_killed_after_its_reply_was_queued_does_not_reply_again(
    harness: Harness, database_url: str
) -> None:
    def dies_after_sending(request: ModelRequest) -> ModelTurn:
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # after send_message committed, before the run was closed
        return turn("", call("send_message", {"text": "Our plans start at the basic tier."}))

    harness.use_model(FunctionModel(dies_after_sending))
    conversation_id = await harness.receive("what plans do you have?")
    await _run_until_killed(harness, conversation_id)
    await harness.receive("and do you integrate with email?")  # came in while it was down

    successor = await _successor(database_url)
    answers = FunctionModel(lambda request: turn("Yes, email is built in."))
    successor.use_model(answers)
    try:
        first = await successor.app.runner.handle_inbound(
            conversation_id, await _pending(successor, conversation_id)
        )
        assert first.status == "finished" and "already been sent" in first.reason
        left = await _pending(successor, conversation_id)
        assert [m.text for m in left] == ["and do you integrate with email?"]
        await successor.app.runner.handle_inbound(conversation_id, left)
        texts = [i.text for i in await successor.rows(OutboxItem, OutboxItem.channel == "console")]
        assert texts == ["Our plans start at the basic tier.", "Yes, email is built in."]
        assert len(answers.requests) == 1  # only the new message cost a model call
        # The audit trail gives each message to one run: the resumed run lists only the
        # message its reply answered, the run after it the one that came while it was down.
        given = {
            event.run_id: [m["text"] for m in event.payload["input"]]
            for event in await successor.rows(
                AuditEvent, AuditEvent.kind.in_(("run_started", "run_resumed"))
            )
        }
        assert sorted(given.values()) == [
            ["and do you integrate with email?"],
            ["what plans do you have?"],
        ]
    finally:
        await successor.app.aclose()


async def test_a_resumed_run_keeps_the_steps_it_had_used(
    harness: Harness, database_url: str
) -> None:
    def busy_then_killed(request: ModelRequest) -> ModelTurn:
        step = len([m for m in request.messages if getattr(m, "name", "") == "get_recent_messages"])
        if step == 4:
            raise Killed()
        return turn("", call("get_recent_messages", {"n": step + 1}, id=f"c{step}"))

    harness.use_model(FunctionModel(busy_then_killed))
    conversation_id = await harness.receive("hello")
    await _run_until_killed(harness, conversation_id)

    successor = await _successor(database_url)
    endless = FunctionModel(
        lambda request: turn("", call("get_recent_messages", {"n": 30 + len(request.messages)}))
    )
    successor.use_model(endless)
    try:
        outcome = await successor.app.runner.handle_inbound(
            conversation_id, await _pending(successor, conversation_id)
        )
        assert outcome.status == "handed_off" and "step limit" in outcome.reason
        assert len(endless.requests) == 0  # 5 of 5 steps were used before the restart
        (run,) = await successor.rows(AgentRun)
        assert run.steps == 5
    finally:
        await successor.app.aclose()


async def _proactive(h: Harness, conversation_id: int, started_by: str) -> RunOutcome:
    return await h.app.runner.handle_proactive(
        conversation_id,
        agent_definition(),
        trigger="event" if started_by.startswith("event:") else "schedule",
        started_by=started_by,
        cause={"event_id": started_by},
        task={"instruction": "Check in.", "message": None},
    )


async def test_a_proactive_run_left_by_a_kill_is_resumed_by_its_own_cause_only(
    harness: Harness, database_url: str
) -> None:
    """Found by `bench.crash` on PostgreSQL: a check-in's run took over an event's run that
    had queued its message and closed it; the event's wake-up, run again, found nothing to
    resume and sent its message a second time."""

    def pings_then_dies(request: ModelRequest) -> ModelTurn:
        if "task" not in request.agent_hints:
            return turn("Hello Ann!")
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # the event's message is queued; its run is never closed
        return turn("", call("send_message", {"text": "About your trial: it ends Friday."}))

    harness.use_model(FunctionModel(pings_then_dies))
    await harness.answer("hi")
    (conversation,) = await harness.rows(Conversation)
    conversation_id = conversation.id
    with pytest.raises(Killed):
        await _proactive(harness, conversation_id, "event:trial-ends")

    successor = await _successor(database_url)
    successor.use_model(FunctionModel(lambda request: turn("Any questions?")))
    try:
        check_in = await _proactive(successor, conversation_id, "job:check-in@10:00")
        event = await _proactive(successor, conversation_id, "event:trial-ends")
        texts = [i.text for i in await successor.rows(OutboxItem, OutboxItem.channel == "console")]
        runs = {run.started_by: run for run in await successor.rows(AgentRun)}
    finally:
        await successor.app.aclose()
    assert check_in.status == "finished" and check_in.run_id == runs["job:check-in@10:00"].id
    assert event.run_id == runs["event:trial-ends"].id and "already been sent" in event.reason
    # Each once, after the greeting: the event's run is resumed by the event's wake-up alone.
    assert texts == ["Hello Ann!", "About your trial: it ends Friday.", "Any questions?"]


async def test_a_proactive_run_waits_for_an_unfinished_inbound_run_instead_of_being_dropped(
    harness: Harness, database_url: str
) -> None:
    def dies_while_answering(request: ModelRequest) -> ModelTurn:
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # the reply is queued; the run is never closed
        return turn("", call("send_message", {"text": "Our plans start at the basic tier."}))

    harness.use_model(FunctionModel(dies_while_answering))
    conversation_id = await harness.receive("what plans do you have?")
    await _run_until_killed(harness, conversation_id)
    outcome = await _proactive(harness, conversation_id, "job:check-in@10:00")
    assert (outcome.status, outcome.reason) == ("postponed", "an inbound run is unfinished")
