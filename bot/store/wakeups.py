"""Wake-ups: proactive runs waiting for their time, claimed by one worker in any process.

A wake-up is created once per `key` (insert, ignoring a conflict), so a firing or an event
processed twice wakes nobody twice. Claiming moves due ones from `pending` to `running` with
a claim that expires: on PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED`, so
workers claiming at once take different rows; on SQLite the transaction holds the write lock
and the `UPDATE` is conditional on the row still being claimable. A worker that dies leaves
`running` rows; they are claimed again once the lease their worker holds while it runs them
(`runner_lease`, kept alive by its heartbeat) has lapsed, or at the latest when their claim
runs out. What they do is idempotent: a resumed run whose message was queued sends nothing
more, and every message has its idempotency key, so nothing is sent twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.dialect import insert_ignoring_conflicts, skipping_locked
from bot.store.models import Lease, Wakeup
from bot.store.types import utcnow

OPEN = ("pending", "running")


@dataclass(frozen=True, slots=True)
class NewWakeup:
    key: str
    agent_name: str
    trigger: dict[str, Any]
    contact_id: int
    cause: dict[str, Any]
    since: datetime
    due_at: datetime
    deal_id: int | None = None
    cancel_on_reply: bool = False


async def add_wakeups(session: AsyncSession, wakeups: Sequence[NewWakeup]) -> int:
    """Store the wake-ups whose key is new; returns how many were new."""
    if not wakeups:
        return 0
    rows = [
        {
            "key": w.key,
            "agent_name": w.agent_name,
            "trigger": w.trigger,
            "contact_id": w.contact_id,
            "deal_id": w.deal_id,
            "cause": w.cause,
            "since": w.since,
            "due_at": w.due_at,
            "cancel_on_reply": w.cancel_on_reply,
            "status": "pending",
        }
        for w in wakeups
    ]
    statement = insert_ignoring_conflicts(session, Wakeup, ["key"]).returning(Wakeup.id)
    result = await session.execute(statement, rows)
    return len(result.all())


def runner_lease(owner: str) -> str:
    """The lease `owner` holds while it runs wake-ups it claimed (see leases.py)."""
    return f"wakeups:{owner}"


def _claimable(now: datetime) -> Any:
    runner_gone = (
        select(Lease.name)
        .where(
            Lease.name == literal("wakeups:") + Wakeup.claimed_by,  # runner_lease, in SQL
            Lease.owner == Wakeup.claimed_by,
            Lease.expires_at < utcnow(),  # leases keep real time (see leases.py), as must this
        )
        .exists()
    )
    return or_(
        and_(Wakeup.status == "pending", Wakeup.due_at <= now),
        and_(Wakeup.status == "running", or_(Wakeup.claimed_until < now, runner_gone)),
    )


async def claim_due(
    session: AsyncSession, now: datetime, worker: str, *, limit: int, claim_seconds: float
) -> list[Wakeup]:
    """Take up to `limit` due wake-ups for `worker`, oldest due first."""
    candidates = select(Wakeup.id).where(_claimable(now)).order_by(Wakeup.due_at).limit(limit)
    ids = list((await session.execute(skipping_locked(session, candidates))).scalars())
    if not ids:
        return []
    claimed = (
        update(Wakeup)
        .where(Wakeup.id.in_(ids), _claimable(now))
        .values(
            status="running",
            claimed_by=worker,
            claimed_until=now + timedelta(seconds=claim_seconds),
        )
        .returning(Wakeup.id)
    )
    taken = list((await session.execute(claimed)).scalars())
    rows = await session.execute(select(Wakeup).where(Wakeup.id.in_(taken)).order_by(Wakeup.due_at))
    return list(rows.scalars())


async def finish(
    session: AsyncSession,
    wakeup_id: int,
    status: str,
    result: str,
    now: datetime,
    run_id: str | None = None,
) -> None:
    """End a claimed wake-up: done (it ran), skipped (a rule or condition said no)."""
    await session.execute(
        update(Wakeup)
        .where(Wakeup.id == wakeup_id)
        .values(
            status=status,
            result=result[:2000],
            run_id=run_id,
            finished_at=now,
            claimed_by=None,
            claimed_until=None,
        )
    )


async def postpone(session: AsyncSession, wakeup_id: int, until: datetime, why: str) -> None:
    """Back to pending, due at `until` (quiet hours, the breaker, a busy conversation)."""
    await session.execute(
        update(Wakeup)
        .where(Wakeup.id == wakeup_id)
        .values(status="pending", due_at=until, result=why, claimed_by=None, claimed_until=None)
    )


async def cancel_on_reply(session: AsyncSession, contact_ids: Sequence[int], now: datetime) -> int:
    """The contacts wrote: their pending follow-ups are moot."""
    if not contact_ids:
        return 0
    result = await session.execute(
        update(Wakeup)
        .where(
            Wakeup.contact_id.in_(sorted(set(contact_ids))),
            Wakeup.status == "pending",
            Wakeup.cancel_on_reply.is_(True),
        )
        .values(status="cancelled", result="the contact wrote", finished_at=now)
        .returning(Wakeup.id)
    )
    return len(result.all())


async def pending_before(session: AsyncSession, end: datetime) -> list[tuple[str, int]]:
    """(agent, how many) of pending wake-ups due before `end`, overdue ones included."""
    query = (
        select(Wakeup.agent_name, func.count())
        .where(Wakeup.status == "pending", Wakeup.due_at < end)
        .group_by(Wakeup.agent_name)
        .order_by(Wakeup.agent_name)
    )
    return [(name, int(n)) for name, n in (await session.execute(query)).all()]


async def for_contact(session: AsyncSession, contact_id: int) -> list[Wakeup]:
    query = select(Wakeup).where(Wakeup.contact_id == contact_id).order_by(Wakeup.id)
    return list((await session.execute(query)).scalars())
