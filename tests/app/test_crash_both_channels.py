"""`crmbot run` SIGKILLed mid-load on Telegram and email at once loses and doubles nothing.

The small run of `bench.crash`: a real `crmbot run` against the fake Bot API, Dovecot and
aiosmtpd; 100 messages from 10 contacts (half on each channel), 3 kills at seeded moments,
a restart after each. Counted from the servers' side and from the store's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.messages import ModelRequest, ModelTurn
from bench.crash import Workload, run
from bot.store.inbox import pending_messages
from bot.store.models import AgentRun, Conversation, Message, OutboxItem
from tests.support.harness import Harness, agent_definition
from tests.support.mail_servers import Dovecot
from tests.support.models import FunctionModel, call, turn

needs_dovecot = pytest.mark.skipif(
    not Dovecot.available(), reason="dovecot is not installed (`make system-deps`)"
)


@needs_dovecot
async def test_three_sigkills_on_both_channels_lose_nothing_double_nothing_and_flag_the_cut(
    database_url: str, tmp_path: Path
) -> None:
    # The Bot API answers 0.5-0.8 s after acting (longer than the kill's jitter), so every kill
    # cuts the Telegram sends in flight: the ambiguous window is exercised, not hoped for.
    workload = Workload(
        messages=100,
        contacts=10,
        kills=3,
        seed=7,
        rate=6.0,
        latency=(0.5, 0.8),
        # The kills fall in the first half of the feed: each restarted process catches up
        # while new messages keep coming on both channels.
        kill_within=0.5,
        time_limit=75,
        stall_seconds=20,
        due_soon=5,
    )

    outcome = await run(workload, database_url, tmp_path)

    figures = outcome.figures
    assert outcome.settled, f"the run {outcome.ending}"
    assert outcome.kills == 3
    assert figures.inbound_recorded == figures.inbound_given == 100
    assert sum(figures.lost.values()) == 0, figures.lost
    assert sum(figures.duplicated.values()) == 0, figures.duplicated
    assert not figures.contacts_mismatched, figures.contacts_mismatched
    assert figures.replies_at_servers["telegram reply"] > 0
    assert figures.replies_at_servers["email reply"] > 0
    assert figures.events_stored == 10  # each contact's event once, however often posted
    # Every send a kill cut is left unknown: never resent, staff told, the agent told.
    assert figures.unknown_total > 0
    assert figures.resent == 0
    assert figures.alerted + figures.alert_unknown == figures.unknown_total
    assert figures.marked == figures.unknown_total


class Killed(BaseException):
    """The worker dies here: nothing after this point in the run happens (like SIGKILL)."""


async def test_a_proactive_run_killed_after_sending_does_not_swallow_the_next_messages(
    harness: Harness, database_url: str
) -> None:
    """Found by the harness: a restarted worker took the unfinished proactive run for its own
    unfinished inbound run, saw "a message was sent" and marked the contact's new messages
    answered by it; they never got a reply."""

    def checks_in_then_dies(request: ModelRequest) -> ModelTurn:
        if "task" not in request.agent_hints:
            return turn("Hello Ann!")
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # the check-in is queued; the run is never closed
        return turn("", call("send_message", {"text": "Hi Ann, just checking in."}))

    harness.use_model(FunctionModel(checks_in_then_dies))
    await harness.answer("hi")
    (conversation,) = await harness.rows(Conversation)
    with pytest.raises(Killed):
        await harness.app.runner.handle_proactive(
            conversation.id,
            agent_definition(),
            trigger="event",
            started_by="event:1",
            cause={"event": "demo.ping"},
            task={"instruction": "Check in.", "message": None},
        )
    await harness.receive("are you there?")

    successor = Harness(database_url, default_agent="tester", run_timeout_seconds=5)
    await successor.app.start()
    successor.use_model(FunctionModel(lambda request: turn("Yes, I am here.")))
    try:
        async with successor.db.transaction() as session:
            pending = await pending_messages(session, conversation.id)
        outcome = await successor.app.runner.handle_inbound(conversation.id, pending)
        texts = [i.text for i in await successor.rows(OutboxItem, OutboxItem.channel == "console")]
        (answered,) = await successor.rows(Message, Message.text == "are you there?")
        (run,) = await successor.rows(AgentRun, AgentRun.id == answered.run_id)
    finally:
        await successor.app.aclose()
    assert outcome.status == "finished", outcome.reason
    assert "Yes, I am here." in texts
    assert run.trigger == "inbound"
