"""Scheduled jobs: firing at their slot, once, after restarts and across workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from agents.messages import ModelRequest, ModelTurn
from bot.store import jobs, leases
from bot.store.models import AgentRun, AuditEvent, JobFiring, Lease, Wakeup
from bot.store.types import utcnow
from tests.scheduler.conftest import Proactive, at
from tests.support.models import FunctionModel, call, turn

NIGHTLY: dict[str, Any] = {
    "name": "nightly-nudge",
    "goal": "Check in with every contact once a night.",
    "persona": "A friendly assistant.",
    "tools": ["send_message", "get_contact"],
    "triggers": [
        {
            "type": "schedule",
            "cron": "0 10 * * *",
            "timezone": "UTC",
            "for_each": "contact",
            "message": "Hi {first_name}, anything we can help with?",
        }
    ],
}


async def test_a_nightly_job_fires_at_its_time_and_not_before(proactive: Proactive) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    proactive.clock.set(at(0, 9, 59))
    report = await proactive.tick()
    assert report.synced == [("nightly-nudge", "created")]
    assert report.fired == []
    assert proactive.email.delivered == []

    proactive.clock.set(at(0, 10, 0, 5))
    report = await proactive.tick()
    assert report.fired == [("nightly-nudge", at(0, 10, 0))]
    assert proactive.email.delivered == [("ann@example.com", "Hi Ann, anything we can help with?")]
    [item] = await proactive.automatic()
    assert item.status == "sent"
    started = await proactive.rows(AuditEvent, AuditEvent.kind == "run_started")
    assert started[-1].payload["cause"]["job"] == "nightly-nudge"
    assert started[-1].actor == f"job:nightly-nudge@{at(0, 10, 0).isoformat()}"

    proactive.clock.advance(minutes=5)
    assert (await proactive.tick()).fired == []  # the slot is spent


async def test_a_restart_after_missed_nights_fires_the_latest_slot_once(
    proactive: Proactive,
) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()  # Monday 09:00: the job is due at 10:00
    # Down from Monday morning until Thursday 11:00: three slots were missed.
    proactive.clock.set(at(3, 11, 0))
    report = await proactive.tick()
    assert report.fired == [("nightly-nudge", at(3, 10, 0))]
    assert len(proactive.email.delivered) == 1
    assert (await proactive.tick()).fired == []
    async with proactive.db.transaction() as session:
        job = await jobs.get_job(session, "nightly-nudge")
    assert job.next_fire_at == at(4, 10, 0)
    assert job.last_status == "done"


async def test_a_slot_missed_beyond_the_grace_is_recorded_not_fired(proactive: Proactive) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    # Back at 23:00 on Thursday: the 10:00 slot is 13 hours old, beyond the 6-hour grace.
    proactive.clock.set(at(3, 23, 0))
    report = await proactive.tick()
    assert report.fired == []
    assert report.missed == [("nightly-nudge", at(3, 10, 0))]
    assert proactive.email.delivered == []


async def test_two_workers_ticking_at_once_fire_a_slot_once(proactive: Proactive) -> None:
    for n in range(3):
        await proactive.lead(f"Lead {n}", f"lead{n}@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    proactive.clock.set(at(0, 10, 0, 1))
    other = proactive.scheduler_for("worker-b")
    reports = await asyncio.gather(proactive.scheduler.tick(), other.tick())
    assert sum(len(r.fired) for r in reports) == 1
    while await proactive.mailer.deliver_due():
        pass
    assert len(await proactive.rows(JobFiring)) == 1
    assert sorted(r for r, _ in proactive.email.delivered) == [
        "lead0@example.com",
        "lead1@example.com",
        "lead2@example.com",
    ]
    assert {w.status for w in await proactive.rows(Wakeup)} == {"done"}


async def test_a_firing_whose_worker_died_is_finished_once(proactive: Proactive) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    slot = at(0, 10, 0)
    async with proactive.db.transaction() as session:  # a worker claimed it, then died
        job = await jobs.get_job(session, "nightly-nudge")
        assert await jobs.advance(session, job.name, job.next_fire_at, slot + timedelta(days=1))
        await jobs.open_firing(session, job.name, slot, worker="dead", now=slot, claim_seconds=60)
    proactive.clock.set(slot + timedelta(minutes=30))
    await proactive.tick()
    await proactive.tick()
    [firing] = await proactive.rows(JobFiring)
    assert firing.status == "done"
    assert len(proactive.email.delivered) == 1


async def test_changing_the_trigger_reschedules_and_disabling_stops(proactive: Proactive) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    later = {**NIGHTLY["triggers"][0], "cron": "0 15 * * *"}
    await proactive.add_agent({**NIGHTLY, "triggers": [later]})
    assert (await proactive.tick()).synced == [("nightly-nudge", "rescheduled")]
    async with proactive.db.transaction() as session:
        job = await jobs.get_job(session, "nightly-nudge")
    assert job.next_fire_at == at(0, 15, 0)

    from agents import catalog

    async with proactive.db.transaction() as session:
        await catalog.set_enabled(session, "nightly-nudge", False)
    assert (await proactive.tick()).synced == [("nightly-nudge", "disabled")]
    proactive.clock.set(at(0, 15, 0, 1))
    assert (await proactive.tick()).fired == []
    assert proactive.email.delivered == []


async def test_a_paused_job_does_not_fire_until_resumed(proactive: Proactive) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    async with proactive.db.transaction() as session:
        assert await jobs.set_paused(session, "nightly-nudge", True) == ["nightly-nudge"]
    proactive.clock.set(at(0, 10, 0, 1))
    assert (await proactive.tick()).fired == []
    async with proactive.db.transaction() as session:
        await jobs.set_paused(session, "nightly-nudge", False)
    assert len((await proactive.tick()).fired) == 1


async def test_a_job_for_each_deal_runs_for_the_quiet_open_deals_only(
    proactive: Proactive,
) -> None:
    from bot.store.models import Deal

    quiet = await proactive.lead("Quiet Co", "quiet@example.com")
    busy = await proactive.lead("Busy Co", "busy@example.com")
    won = await proactive.lead("Won Co", "won@example.com")
    async with proactive.db.transaction() as session:
        long_ago = proactive.clock.now - timedelta(days=30)
        session.add(Deal(contact_id=quiet, title="Q", stage="proposal", last_activity_at=long_ago))
        recently = proactive.clock.now - timedelta(days=1)
        session.add(Deal(contact_id=busy, title="B", stage="proposal", last_activity_at=recently))
        session.add(Deal(contact_id=won, title="W", stage="won", last_activity_at=long_ago))
    spec = {
        **NIGHTLY,
        "name": "deal-chaser",
        "triggers": [
            {
                **NIGHTLY["triggers"][0],
                "for_each": "deal",
                "when": {"inactive_days": 10},
                "message": "Hi {first_name}, shall we pick our proposal up again?",
            }
        ],
    }
    await proactive.add_agent(spec)
    await proactive.tick()
    desk_preview = await proactive.harness.app.jobs.preview_text(24)
    assert "deal-chaser: 1 firing(s)" in desk_preview and "1 deals now" in desk_preview
    proactive.clock.set(at(0, 10, 0, 1))
    await proactive.tick()
    assert proactive.email.delivered == [
        ("quiet@example.com", "Hi Quiet, shall we pick our proposal up again?")
    ]
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.deal_id is not None and wakeup.contact_id == quiet


async def test_stopping_the_clock_lets_the_tick_in_progress_finish_without_a_crash_report(
    proactive: Proactive, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the process tests: shutting the clock down cancelled the tick it was running,
    halfway through its runs, and the clock logged that as a crash with a traceback."""
    scheduler = proactive.scheduler
    started, finished = asyncio.Event(), asyncio.Event()
    sync = scheduler.sync_jobs

    async def slow_sync() -> list[tuple[str, str]]:
        started.set()
        await asyncio.sleep(0.3)  # the process is stopped while the tick is at work
        changes = await sync()
        finished.set()
        return changes

    monkeypatch.setattr(scheduler, "sync_jobs", slow_sync)
    clock = asyncio.create_task(scheduler.run_forever())
    await asyncio.wait_for(started.wait(), 5)
    clock.cancel()
    with pytest.raises(asyncio.CancelledError):
        await clock

    assert finished.is_set()
    assert "raised an exception" not in caplog.text and "Traceback" not in caplog.text


class Killed(BaseException):
    """The worker dies here: nothing after this point in its process happens (like SIGKILL)."""


async def test_a_check_in_whose_worker_died_after_queueing_it_is_taken_over_and_sent_once(
    proactive: Proactive,
) -> None:
    await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()

    def checks_in_then_dies(request: ModelRequest) -> ModelTurn:
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # the check-in is queued; the run and its wake-up never closed
        return turn("", call("send_message", {"text": "Hi Ann, anything we can help with?"}))

    proactive.harness.use_model(FunctionModel(checks_in_then_dies))
    proactive.clock.set(at(0, 10, 0, 5))
    with pytest.raises(Killed):
        await proactive.scheduler.tick()  # fires the slot, then runs its wake-up
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.status == "running"

    successor = proactive.scheduler_for("worker-b")
    never = FunctionModel(lambda request: pytest.fail("the check-in was asked for again"))
    proactive.harness.use_model(never)
    assert await successor.wakeups.run_due() == 0  # its worker's leases are alive: hands off

    async with proactive.db.transaction() as session:  # its heartbeat stopped: leases lapse
        await session.execute(
            update(Lease)
            .where(leases.owned_by(proactive.harness.settings.worker_id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # Taken over at once, not when the ten-minute claim runs out: the resumed run finds its
    # message queued and closes, and the wake-up is done in the same commit.
    assert await successor.wakeups.run_due() == 1
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.status == "done" and "already been sent" in (wakeup.result or "")
    [run] = await proactive.rows(AgentRun)
    assert run.status == "finished" and wakeup.run_id == run.id
    while await proactive.mailer.deliver_due():
        pass
    assert proactive.email.delivered == [("ann@example.com", "Hi Ann, anything we can help with?")]
    assert never.requests == []


async def test_a_check_in_waits_for_an_inbound_run_a_dead_worker_left_instead_of_dropping(
    proactive: Proactive,
) -> None:
    ann = await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()

    def replies_then_dies(request: ModelRequest) -> ModelTurn:
        if any(getattr(m, "name", "") == "send_message" for m in request.messages):
            raise Killed()  # the reply is queued; the inbound run is never closed
        return turn("", call("send_message", {"text": "Happy to help."}))

    proactive.harness.use_model(FunctionModel(replies_then_dies))
    with pytest.raises(Killed):
        await proactive.reply(ann, "a question about pricing")
    proactive.clock.set(at(0, 10, 0, 5))
    await proactive.tick()
    [wakeup] = await proactive.rows(Wakeup)
    assert (wakeup.status, wakeup.result) == ("pending", "an inbound run is unfinished")
    assert wakeup.due_at > proactive.clock()  # tried again in a minute, not dropped
    [postponed] = await proactive.rows(AuditEvent, AuditEvent.kind == "wakeup_postponed")
    assert postponed.payload["reason"] == "an inbound run is unfinished"


async def test_a_check_in_waits_for_an_inbound_turn_of_its_own_process(
    proactive: Proactive,
) -> None:
    # One process holds both kinds of turn under different owner names: a wake-up must not
    # start beside an inbound run (or a turn its intake took) because the worker is the same.
    contact_id = await proactive.lead("Ann Lee", "ann@example.com")
    await proactive.add_agent(NIGHTLY)
    await proactive.tick()
    conversation_id = await proactive.harness.receive(
        "a question, just in", "ann@example.com", channel="email", take_turn=True
    )
    proactive.harness.use_model(
        FunctionModel(lambda request: pytest.fail("a run started beside the inbound turn"))
    )

    proactive.clock.set(at(0, 10, 0, 5))
    await proactive.scheduler.tick()

    [wakeup] = await proactive.rows(Wakeup)
    assert (wakeup.status, wakeup.result) == ("pending", "conversation busy")
    assert wakeup.contact_id == contact_id
    assert await proactive.rows(AgentRun) == []
    async with proactive.db.reading() as session:
        assert await leases.holder(session, f"conversation:{conversation_id}") == (
            proactive.harness.settings.worker_id
        )
