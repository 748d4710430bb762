"""Leases: one worker at a time for a conversation or a single-worker job, in any process.

One mechanism for every kind of turn: a row in `leases` named for what it guards
(`conversation:42`, `telegram:poller`, `email:bot@example.com:poller`). A lease is taken with
one upsert that succeeds only when the row is free, expired or already ours. The holder's
`Heartbeat` pushes the expiry of all its leases forward in one statement every third of
`LEASE_SECONDS`; when a worker dies its heartbeats stop and its leases lapse within
`LEASE_SECONDS`, so a successor never waits out a long lease. A clean stop releases them.

A worker holds a conversation under one of two owners: its own name for inbound runs (taken
by the intake that recorded the messages, or by the dispatcher) and `proactive_owner` for
wake-ups, so the two kinds of run exclude each other inside one process as they do across
processes. The heartbeat renews both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import Database
from bot.store.dialect import dialect_insert
from bot.store.models import Lease as LeaseRow
from bot.store.types import utcnow

log = logging.getLogger("bot.store")


def conversation_lease(conversation_id: int) -> str:
    """The lease that gives one worker a conversation's turn (inbound or proactive)."""
    return f"conversation:{conversation_id}"


def proactive_owner(worker_id: str) -> str:
    """Who a worker's proactive runs hold their conversations as (see the module's doc)."""
    return f"{worker_id}/proactive"


def owned_by(worker_id: str) -> ColumnElement[bool]:
    """The leases `worker_id` holds under any of its owner names."""
    column = LeaseRow.__table__.c.owner
    return or_(column == worker_id, column.startswith(f"{worker_id}/", autoescape=True))


async def try_acquire(session: AsyncSession, name: str, owner: str, seconds: float) -> bool:
    """Take (or extend) the lease `name` for `seconds`; False while another worker holds it."""
    return name in await try_acquire_many(session, [name], owner, seconds)


async def try_acquire_many(
    session: AsyncSession, names: list[str], owner: str, seconds: float
) -> set[str]:
    """`try_acquire` for several leases in one statement; returns the names now held."""
    if not names:
        return set()
    now = utcnow()
    expires = now + timedelta(seconds=seconds)
    rows = [
        {"name": name, "owner": owner, "expires_at": expires, "acquired_at": now}
        for name in sorted(set(names))  # in key order: two intakes never wait on each other
    ]
    insert = dialect_insert(session, LeaseRow).values(rows)
    table = LeaseRow.__table__.c
    statement = insert.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "expires_at": expires, "acquired_at": insert.excluded.acquired_at},
        where=or_(table.owner == owner, table.expires_at < now),
    ).returning(table.name)
    return set((await session.execute(statement)).scalars())


async def release(session: AsyncSession, name: str, owner: str) -> None:
    """Give up `name` if `owner` holds it, so the next worker need not wait it out."""
    await session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.owner == owner))


async def renew_all(session: AsyncSession, owner: str, seconds: float) -> int:
    """Push the expiry of every lease the worker `owner` holds (under any of its owner names)
    forward; returns how many it holds."""
    result = await session.execute(
        update(LeaseRow)
        .where(owned_by(owner), LeaseRow.expires_at >= utcnow())
        .values(expires_at=utcnow() + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def holder(session: AsyncSession, name: str) -> str | None:
    """Who holds `name` now, if anyone."""
    query = select(LeaseRow.owner).where(LeaseRow.name == name, LeaseRow.expires_at >= utcnow())
    return (await session.execute(query)).scalar_one_or_none()


class Heartbeat:
    """Keeps every lease of this worker alive while the process is."""

    def __init__(self, db: Database, owner: str, seconds: float) -> None:
        self.db, self.owner, self.seconds = db, owner, seconds

    async def beat(self) -> int:
        async with self.db.transaction() as session:
            return await renew_all(session, self.owner, self.seconds)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self.beat()
            except Exception:
                log.exception("lease heartbeat failed; retrying")


class Lease:
    """A renewable lease named `key`, held by `owner` for `seconds` at a time."""

    def __init__(self, db: Database, key: str, owner: str, seconds: float) -> None:
        self.db, self.key, self.owner, self.seconds = db, key, owner, seconds
        self._renewed_at = 0.0

    async def hold(self) -> bool:
        """Take or renew the lease; False while another worker holds it."""
        async with self.db.transaction() as session:
            held = await try_acquire(session, self.key, self.owner, self.seconds)
        self._renewed_at = asyncio.get_running_loop().time()
        return held

    async def renew_if_due(self) -> bool:
        """Renew once a third of the lease has passed; False if it was lost meanwhile."""
        if asyncio.get_running_loop().time() - self._renewed_at < self.seconds / 3:
            return True
        return await self.hold()

    async def release(self) -> None:
        async with self.db.transaction() as session:
            await release(session, self.key, self.owner)

    async def run(self, step: Callable[[], Awaitable[None]]) -> None:
        """Repeat `step` while this worker holds the lease; wait while another does; release
        it when stopped."""
        try:
            while True:
                if not await self.hold():
                    await asyncio.sleep(self.seconds / 3)
                    continue
                await step()
        finally:
            try:
                await self.release()
            except Exception:
                # It lapses by itself within `seconds`; what stopped us must not be masked.
                log.warning("lease %s not released; it lapses in %gs", self.key, self.seconds)
