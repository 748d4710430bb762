"""`crmbot jobs ...` and `/jobs ...`: one implementation, text out, every change audited."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import datetime

from bot.core.errors import ConfigurationError
from bot.store import jobs
from bot.store import proactive as proactive_store
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.types import utcnow
from scheduler.preview import preview
from scheduler.service import Scheduler

USAGE = (
    "Usage: /jobs list | /jobs run NAME | /jobs pause NAME | /jobs resume [NAME] | "
    "/jobs preview [HOURS]  (/jobs resume alone resumes every job and automatic sending)"
)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"


class JobsDesk:
    """Lists, fires, pauses and resumes jobs, and the proactive breaker."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        scheduler: Scheduler,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.audit, self.scheduler, self.clock = db, audit, scheduler, clock

    async def list_text(self) -> str:
        await self.scheduler.sync_jobs()
        async with self.db.reading() as session:
            rows = await jobs.all_jobs(session)
            switch = await proactive_store.breaker(session)
        lines = []
        for job in rows:
            state = "paused" if job.paused else ("enabled" if job.enabled else "disabled")
            last = f"{job.last_status or 'never'} {_when(job.last_fire_at)}"
            result = f" ({job.last_result})" if job.last_result else ""
            lines.append(
                f"{job.name:<24} {state:<8} next {_when(job.next_fire_at)}  last {last}{result}"
            )
        if not lines:
            lines.append("no jobs: no enabled agent has a schedule trigger")
        if switch is not None and switch.tripped:
            lines.append(
                f"⛔ automatic sending is paused: {switch.reason} (resume: jobs resume --all)"
            )
        return "\n".join(lines)

    async def run(self, name: str, by: str) -> str:
        result = await self.scheduler.fire_now(name, by)
        details = ", ".join(f"{k} {v}" for k, v in result.items())
        return f"fired {name}: {details}"

    async def pause(self, name: str, by: str) -> str:
        return await self._set_paused(name, True, by)

    async def resume(self, name: str | None, by: str) -> str:
        """One job, or (None) every job and the proactive breaker."""
        text = await self._set_paused(name, False, by)
        if name is not None:
            return text
        async with self.db.transaction() as session:
            reset = await proactive_store.reset_breaker(session, by, self.clock())
            if reset:
                await self.audit.append(session, "breaker_reset", {"by": by}, actor=by)
        return text + ("; automatic sending resumed" if reset else "")

    async def _set_paused(self, name: str | None, paused: bool, by: str) -> str:
        await self.scheduler.sync_jobs()
        async with self.db.transaction() as session:
            changed = await jobs.set_paused(session, name, paused)
            for job in changed:
                await self.audit.append(
                    session, "job_paused" if paused else "job_resumed", {"job": job}, actor=by
                )
        verb = "paused" if paused else "resumed"
        if not changed:
            return f"nothing to do: {name or 'every job'} was {verb} already"
        return f"{verb} " + ", ".join(changed)

    async def preview_text(self, hours: float) -> str:
        if not 0 < hours <= 24 * 31:
            raise ConfigurationError("hours must be between 0 and 744")
        await self.scheduler.sync_jobs()
        planned, waiting = await preview(self.db, hours, self.clock())
        lines = [f"In the next {hours:g} h (nothing is sent by this preview):"]
        for firing in planned:
            times = ", ".join(_when(slot) for slot in firing.slots[:5])
            more = f" (+{len(firing.slots) - 5} more)" if len(firing.slots) > 5 else ""
            lines.append(
                f"{firing.job}: {len(firing.slots)} firing(s) at {times}{more}; "
                f"{firing.targets} {firing.unit} now"
            )
        for agent, count in waiting:
            lines.append(f"{agent}: {count} wake-up(s) due (events, follow-ups, earlier firings)")
        if len(lines) == 1:
            lines.append("nothing is due")
        return "\n".join(lines)

    async def command(self, by: str, text: str) -> str:
        """`/jobs ...` from an admin."""
        try:
            args = shlex.split(text)
        except ValueError:
            return USAGE
        verb, rest = (args[0].lower(), args[1:]) if args else ("list", [])
        try:
            return await self._dispatch(verb, rest, by)
        except ConfigurationError as error:
            return f"{error}\n{USAGE}"

    async def _dispatch(self, verb: str, rest: list[str], by: str) -> str:
        if verb == "list" and not rest:
            return await self.list_text()
        if verb == "run" and len(rest) == 1:
            return await self.run(rest[0], by)
        if verb == "pause" and len(rest) == 1:
            return await self.pause(rest[0], by)
        if verb == "resume" and len(rest) <= 1:
            name = rest[0] if rest and rest[0] not in ("--all", "all") else None
            return await self.resume(name, by)
        if verb == "preview" and len(rest) <= 1:
            try:
                hours = float(rest[0]) if rest else 24.0
            except ValueError:
                return f"hours must be a number, not {rest[0]!r}\n{USAGE}"
            return await self.preview_text(hours)
        return USAGE
