"""The scheduler: jobs from the agent definitions, their firings, and the wake-ups they make.

APScheduler's `AsyncIOScheduler` is only the clock inside `crmbot run`: it calls `tick` at
every job's own slots and every `SCHEDULER_TICK_SECONDS`. What is due lives in our tables, so
`tick` may run in every worker at once, and after any restart: each firing is claimed once
(`bot.store.jobs`), each wake-up once (`bot.store.wakeups`).

A tick, in order:
1. Jobs follow the definitions: a new schedule trigger makes a job, a changed one reschedules
   it, a disabled agent or a removed trigger disables it.
2. Due jobs fire. A slot missed while the bot was down fires once (the latest missed slot),
   if it is within `SCHEDULER_MISFIRE_GRACE_SECONDS`; older ones are recorded as missed.
3. Firings whose worker died are taken over and finished.
4. Due wake-ups run (`scheduler.wakeups`).
5. Meeting reminders that are due are queued (`scheduler.reminders`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agents import catalog
from agents.definition import ScheduleTrigger
from agents.runner import AgentRunner
from bot.core.errors import NotFoundError
from bot.core.settings import Settings
from bot.desk.proactive import ProactiveRules
from bot.store import jobs
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.models import Job, JobFiring
from bot.store.types import utcnow
from scheduler.clock import aps_trigger, latest_slot, next_after, trigger_hash
from scheduler.firing import run_firing
from scheduler.reminders import MeetingReminders
from scheduler.wakeups import WakeupWorker

log = logging.getLogger("scheduler")
FIRING_CLAIM_SECONDS = 1800.0


@dataclass
class TickReport:
    """What one tick did (for tests and `crmbot jobs run`)."""

    synced: list[tuple[str, str]] = field(default_factory=list)
    fired: list[tuple[str, datetime]] = field(default_factory=list)
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    wakeups: int = 0
    reminders: int = 0


class Scheduler:
    """Fires jobs and runs wake-ups; safe to run in several processes at once."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        runner: AgentRunner,
        rules: ProactiveRules,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        direct_channel: str | None = None,
    ) -> None:
        self.db, self.audit, self.settings, self.clock = db, audit, settings, clock
        self.worker_id = settings.worker_id
        self.grace = timedelta(seconds=settings.scheduler_misfire_grace_seconds)
        self.direct_channel = direct_channel
        self.wakeups = WakeupWorker(
            db,
            audit,
            runner,
            rules,
            worker_id=settings.worker_id,
            lease_seconds=settings.lease_seconds,
            clock=clock,
        )
        self.reminders = MeetingReminders(
            db,
            audit,
            before=settings.meeting_reminder,
            team_zone=ZoneInfo(settings.business_timezone),
            clock=clock,
        )
        self._ticking = asyncio.Lock()
        self._registered: dict[str, str] = {}

    async def tick(self) -> TickReport:
        """Everything that is due now, once."""
        async with self._ticking:
            report = TickReport()
            report.synced = await self.sync_jobs()
            await self._fire_due(report)
            await self._finish_lapsed()
            report.wakeups = await self.wakeups.run_due()
            report.reminders = await self.reminders.queue_due()
            return report

    async def sync_jobs(self) -> list[tuple[str, str]]:
        """Make the jobs table follow the definitions; (job, what changed) for each change."""
        now = self.clock()
        changes: list[tuple[str, str]] = []
        async with self.db.transaction() as session:
            keep: set[str] = set()
            for stored in await catalog.list_all(session):
                for name, trigger in stored.definition.schedules():
                    keep.add(name)
                    spec = jobs.JobSpec(
                        name,
                        stored.definition.name,
                        trigger.model_dump(mode="json"),
                        trigger_hash(trigger),
                    )
                    change = await jobs.put_job(
                        session,
                        spec,
                        enabled=stored.enabled,
                        next_fire_at=next_after(trigger, now),
                    )
                    if change != "kept":
                        changes.append((name, change))
            changes += [(name, "disabled") for name in await jobs.disable_others(session, keep)]
            for name, change in changes:
                await self.audit.append(session, "job_" + change, {"job": name}, actor="scheduler")
        for name, change in changes:
            log.info("job %s %s", name, change)
        return changes

    async def _fire_due(self, report: TickReport) -> None:
        now = self.clock()
        claimed: list[tuple[Job, JobFiring]] = []
        async with self.db.transaction() as session:
            for job in await jobs.due_jobs(session, now):
                trigger = ScheduleTrigger.model_validate(job.trigger)
                assert job.next_fire_at is not None
                slot = latest_slot(trigger, job.next_fire_at, now)
                following = next_after(trigger, max(slot, now))
                if not await jobs.advance(session, job.name, job.next_fire_at, following):
                    continue  # another worker took this slot
                if now - slot > self.grace:
                    await jobs.note_missed(session, job.name, slot, "missed beyond the grace")
                    report.missed.append((job.name, slot))
                    continue
                firing = await jobs.open_firing(
                    session,
                    job.name,
                    slot,
                    worker=self.worker_id,
                    now=now,
                    claim_seconds=FIRING_CLAIM_SECONDS,
                )
                if firing is not None:
                    claimed.append((job, firing))
        for job, firing in claimed:
            await self._work(job.agent_name, firing)
            report.fired.append((job.name, firing.scheduled_for))

    async def _finish_lapsed(self) -> None:
        async with self.db.transaction() as session:
            lapsed = await jobs.reclaim_lapsed(
                session, self.clock(), self.worker_id, FIRING_CLAIM_SECONDS
            )
            names = {f.id: (await jobs.get_job(session, f.job_name)).agent_name for f in lapsed}
        for firing in lapsed:
            log.warning(
                "firing %s (%s) was left unfinished; finishing it", firing.id, firing.job_name
            )
            await self._work(names[firing.id], firing)

    async def _work(self, agent_name: str, firing: JobFiring) -> dict[str, Any]:
        """Run one claimed firing and record its end (failed, with the error, if it raised)."""
        now = self.clock()
        status, result = "done", {}
        try:
            async with self.db.reading() as session:
                stored = await catalog.get(session, agent_name)
                job = await jobs.get_job(session, firing.job_name)
            trigger = ScheduleTrigger.model_validate(job.trigger)
            result = await run_firing(
                self.db,
                self.audit,
                stored,
                trigger,
                firing,
                now=now,
                direct_channel=self.direct_channel,
            )
        except Exception as error:
            log.exception("firing %s of %s failed", firing.id, firing.job_name)
            status, result = "failed", {"error": f"{type(error).__name__}: {error}"[:500]}
        summary = ", ".join(f"{k} {v}" for k, v in result.items()) or status
        async with self.db.transaction() as session:
            await jobs.finish_firing(
                session, firing, status=status, result=result, summary=summary, now=self.clock()
            )
            await self.audit.append(
                session,
                "job_fired",
                {
                    "job": firing.job_name,
                    "firing_id": firing.id,
                    "scheduled_for": firing.scheduled_for.isoformat(),
                    "manual_by": firing.manual_by,
                    "status": status,
                    "result": result,
                },
                actor=f"agent:{agent_name}",
            )
        return {"status": status, **result}

    async def fire_now(self, name: str, by: str) -> dict[str, Any]:
        """`crmbot jobs run NAME`: one firing now, by hand, then its wake-ups."""
        await self.sync_jobs()
        now = self.clock()
        async with self.db.transaction() as session:
            job = await jobs.get_job(session, name)
            if not job.enabled:
                raise NotFoundError(f"job {name} is disabled (its agent is disabled)")
            firing = await jobs.open_firing(
                session,
                name,
                now,
                worker=self.worker_id,
                now=now,
                claim_seconds=FIRING_CLAIM_SECONDS,
                manual_by=by,
            )
        if firing is None:
            raise NotFoundError(f"job {name} was fired at this instant already")
        result = await self._work(job.agent_name, firing)
        result["wakeups_run"] = await self.wakeups.run_due()
        return result

    # The clock ------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Tick at every job's slots and every `SCHEDULER_TICK_SECONDS`, until cancelled."""
        clock = AsyncIOScheduler(timezone="UTC")
        clock.add_job(
            self._clock_job,
            IntervalTrigger(seconds=self.settings.scheduler_tick_seconds),
            args=[functools.partial(self._tick_and_refresh, clock)],
            id="tick",
            coalesce=True,
            max_instances=1,
            next_run_time=utcnow(),
        )
        clock.start()
        try:
            await asyncio.Event().wait()  # the clock's jobs do the work, until cancelled
        finally:
            # A tick in progress finishes its runs, like the dispatcher's do: the clock is
            # paused first, because shutting it down cancels the jobs it is running.
            with contextlib.suppress(Exception):
                clock.pause()
            async with self._ticking:
                pass
            with contextlib.suppress(Exception):
                clock.shutdown(wait=False)

    async def _tick_and_refresh(self, clock: AsyncIOScheduler) -> None:
        await self._tick_logged()
        try:
            await self._refresh_slots(clock)
        except Exception:
            log.exception("could not refresh the job slots; the next tick retries")

    async def _refresh_slots(self, clock: AsyncIOScheduler) -> None:
        """One APScheduler job per enabled job, so a nightly slot is not up to a tick late."""
        async with self.db.reading() as session:
            current = {job.name: job for job in await jobs.all_jobs(session)}
        for name in list(self._registered):
            job = current.get(name)
            stale = job is None or job.trigger_hash != self._registered[name]
            if stale or job is None or not job.enabled or job.paused:
                with contextlib.suppress(Exception):
                    clock.remove_job(f"slot:{name}")
                del self._registered[name]
        for name, job in current.items():
            if name in self._registered or not job.enabled or job.paused:
                continue
            trigger = ScheduleTrigger.model_validate(job.trigger)
            clock.add_job(
                self._clock_job,
                aps_trigger(trigger),
                args=[self._tick_logged],
                id=f"slot:{name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
            self._registered[name] = job.trigger_hash

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("scheduler tick failed; the next one retries")

    @staticmethod
    async def _clock_job(work: Callable[[], Awaitable[None]]) -> None:
        """Runs `work` as one of the clock's jobs. Shutting the clock down cancels the jobs it
        runs, and it logs a cancelled job as a crash, with its traceback; by then a tick in
        progress has finished (see `run_forever`), so what is cancelled had not started."""
        try:
            await work()
        except asyncio.CancelledError:
            log.info("scheduler tick cancelled at shutdown; the next start runs it")
