"""Jobs and their firings: what is scheduled, and each firing claimed by exactly one worker.

A job's `next_fire_at` is the store of record for when it is due. Claiming a firing moves
`next_fire_at` on with a conditional `UPDATE` (it must still hold the slot the claimer read)
and inserts the firing, unique by (job, scheduled time), in the same transaction; on
PostgreSQL the due jobs are also read `FOR UPDATE SKIP LOCKED`, so workers polling at once
take different jobs instead of queueing on the same rows. Either way a slot is fired once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import NotFoundError
from bot.store.dialect import insert_ignoring_conflicts, skipping_locked
from bot.store.models import Job, JobFiring


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as an agent definition declares it."""

    name: str
    agent_name: str
    trigger: dict[str, Any]
    trigger_hash: str


async def get_job(session: AsyncSession, name: str) -> Job:
    job = await session.get(Job, name)
    if job is None:
        raise NotFoundError(f"no job named {name!r} (see: crmbot jobs list)")
    return job


async def all_jobs(session: AsyncSession) -> list[Job]:
    return list((await session.execute(select(Job).order_by(Job.name))).scalars())


async def put_job(
    session: AsyncSession, spec: JobSpec, *, enabled: bool, next_fire_at: datetime | None
) -> str:
    """Store `spec`: 'created', 'rescheduled' (its trigger changed), 'enabled', 'disabled' or
    'kept'. `next_fire_at` is used for a new or rescheduled job, or one enabled again."""
    job = await session.get(Job, spec.name, with_for_update=True)
    if job is None:
        session.add(
            Job(
                name=spec.name,
                agent_name=spec.agent_name,
                trigger=spec.trigger,
                trigger_hash=spec.trigger_hash,
                enabled=enabled,
                next_fire_at=next_fire_at,
            )
        )
        await session.flush()
        return "created"
    if job.trigger_hash != spec.trigger_hash:
        job.trigger, job.trigger_hash = spec.trigger, spec.trigger_hash
        job.agent_name, job.enabled, job.next_fire_at = spec.agent_name, enabled, next_fire_at
        return "rescheduled"
    if job.enabled != enabled:
        job.enabled = enabled
        if enabled:
            job.next_fire_at = next_fire_at
        return "enabled" if enabled else "disabled"
    return "kept"


async def disable_others(session: AsyncSession, keep: set[str]) -> list[str]:
    """Disable every enabled job not in `keep` (its agent or trigger is gone)."""
    gone = [job for job in await all_jobs(session) if job.enabled and job.name not in keep]
    for job in gone:
        job.enabled = False
    return [job.name for job in gone]


async def due_jobs(session: AsyncSession, now: datetime) -> list[Job]:
    """Enabled, unpaused jobs whose slot has come."""
    query = (
        select(Job)
        .where(Job.enabled.is_(True), Job.paused.is_(False), Job.next_fire_at <= now)
        .order_by(Job.next_fire_at)
    )
    return list((await session.execute(skipping_locked(session, query))).scalars())


async def advance(
    session: AsyncSession, name: str, slot: datetime | None, next_fire_at: datetime | None
) -> bool:
    """Move the job from `slot` to `next_fire_at`; False if another worker moved it first."""
    result = await session.execute(
        update(Job)
        .where(Job.name == name, Job.next_fire_at == slot)
        .values(next_fire_at=next_fire_at)
        .returning(Job.name)
    )
    return result.first() is not None


async def open_firing(
    session: AsyncSession,
    job_name: str,
    scheduled_for: datetime,
    *,
    worker: str,
    now: datetime,
    claim_seconds: float,
    manual_by: str | None = None,
) -> JobFiring | None:
    """Insert the firing of `job_name` at `scheduled_for`; None if it exists already."""
    statement = (
        insert_ignoring_conflicts(session, JobFiring, ["job_name", "scheduled_for"])
        .values(
            job_name=job_name,
            scheduled_for=scheduled_for,
            manual_by=manual_by,
            status="running",
            worker=worker,
            claimed_until=now + timedelta(seconds=claim_seconds),
            started_at=now,
            result={},
        )
        .returning(JobFiring.id)
    )
    firing_id = (await session.execute(statement)).scalar_one_or_none()
    if firing_id is None:
        return None
    return await session.get(JobFiring, firing_id)


async def reclaim_lapsed(
    session: AsyncSession, now: datetime, worker: str, claim_seconds: float
) -> list[JobFiring]:
    """Firings whose worker stopped before finishing them, taken over by `worker`."""
    lapsed = select(JobFiring.id).where(
        JobFiring.status == "running", JobFiring.claimed_until < now
    )
    ids = list((await session.execute(skipping_locked(session, lapsed))).scalars())
    if not ids:
        return []
    taken = await session.execute(
        update(JobFiring)
        .where(
            JobFiring.id.in_(ids),
            JobFiring.status == "running",
            JobFiring.claimed_until < now,
        )
        .values(worker=worker, claimed_until=now + timedelta(seconds=claim_seconds))
        .returning(JobFiring.id)
    )
    claimed = list(taken.scalars())
    rows = await session.execute(select(JobFiring).where(JobFiring.id.in_(claimed)))
    return list(rows.scalars())


async def finish_firing(
    session: AsyncSession,
    firing: JobFiring,
    *,
    status: str,
    result: dict[str, Any],
    summary: str,
    now: datetime,
) -> None:
    """Record how a firing ended, on the firing and as the job's last result."""
    await session.execute(
        update(JobFiring)
        .where(JobFiring.id == firing.id)
        .values(status=status, result=result, finished_at=now)
    )
    await session.execute(
        update(Job)
        .where(
            Job.name == firing.job_name,
            or_(Job.last_fire_at.is_(None), Job.last_fire_at <= firing.scheduled_for),
        )
        .values(last_fire_at=firing.scheduled_for, last_status=status, last_result=summary[:2000])
    )


async def note_missed(session: AsyncSession, name: str, slot: datetime, summary: str) -> None:
    await session.execute(
        update(Job)
        .where(Job.name == name)
        .values(last_status="missed", last_result=f"{slot.isoformat()}: {summary}"[:2000])
    )


async def set_paused(session: AsyncSession, name: str | None, paused: bool) -> list[str]:
    """Pause or resume one job (or every job when `name` is None); the names changed."""
    jobs = [await get_job(session, name)] if name is not None else await all_jobs(session)
    changed = [job.name for job in jobs if job.paused != paused]
    for job in jobs:
        job.paused = paused
    return changed
