"""Leases give a conversation or a job to one worker at a time, in any process.

A holder's heartbeat keeps them; a dead holder's lapse within LEASE_SECONDS, and a clean stop
hands them on at once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from bot.store import leases
from bot.store.db import Database
from bot.store.dialect import dialect_insert
from bot.store.leases import Heartbeat, Lease
from bot.store.models import Lease as LeaseRow
from bot.store.types import utcnow


async def acquire(db: Database, name: str, owner: str, seconds: float = 60) -> bool:
    async with db.transaction() as session:
        return await leases.try_acquire(session, name, owner, seconds)


async def holder(db: Database, name: str) -> str | None:
    async with db.transaction() as session:
        return await leases.holder(session, name)


async def test_a_lease_held_by_one_worker_is_refused_to_another(db: Database) -> None:
    assert await acquire(db, "conversation:1", "worker-a")
    assert not await acquire(db, "conversation:1", "worker-b")
    assert await holder(db, "conversation:1") == "worker-a"
    assert await acquire(db, "conversation:2", "worker-b")  # other names are independent


async def test_an_expired_lease_can_be_taken_over(db: Database) -> None:
    assert await acquire(db, "conversation:1", "worker-a")
    async with db.transaction() as session:  # worker-a died and its lease ran out
        await session.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))

    assert await acquire(db, "conversation:1", "worker-b")
    assert await holder(db, "conversation:1") == "worker-b"
    assert not await acquire(db, "conversation:1", "worker-a")


async def test_the_owner_can_extend_its_lease(db: Database) -> None:
    assert await acquire(db, "job", "worker-a", seconds=10)
    assert await acquire(db, "job", "worker-a", seconds=600)
    async with db.transaction() as session:
        row = (await session.execute(select(LeaseRow))).scalar_one()
    assert row.expires_at - utcnow() > timedelta(seconds=500)


async def test_only_the_owner_can_release_the_lease(db: Database) -> None:
    assert await acquire(db, "job", "worker-a")
    async with db.transaction() as session:
        await leases.release(session, "job", "worker-b")
    assert not await acquire(db, "job", "worker-b")
    async with db.transaction() as session:
        await leases.release(session, "job", "worker-a")
    assert await holder(db, "job") is None
    assert await acquire(db, "job", "worker-b")


async def test_concurrent_takers_get_one_lease(db: Database) -> None:
    results = await asyncio.gather(*(acquire(db, "job", f"w{n}") for n in range(8)))
    assert results.count(True) == 1


async def test_a_heartbeat_keeps_every_lease_of_its_worker(db: Database) -> None:
    for name in ("conversation:1", "conversation:2", "telegram:poller"):
        assert await acquire(db, name, "alive", seconds=0.3)
    assert await acquire(db, "conversation:3", "dead", seconds=0.3)
    heartbeat = Heartbeat(db, "alive", seconds=0.3)
    beating = asyncio.create_task(heartbeat.run_forever())
    try:
        await asyncio.sleep(0.8)  # well past the leases' first expiry
        for name in ("conversation:1", "conversation:2", "telegram:poller"):
            assert not await acquire(db, name, "other", seconds=0.3)
        assert await acquire(db, "conversation:3", "other")  # its holder stopped beating
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)


async def test_a_heartbeat_does_not_revive_a_lease_already_lost(db: Database) -> None:
    assert await acquire(db, "job", "slow", seconds=0.01)
    await asyncio.sleep(0.05)
    assert await acquire(db, "job", "fast")
    assert await Heartbeat(db, "slow", 60).beat() == 0
    assert await holder(db, "job") == "fast"


async def test_an_expired_single_worker_job_is_taken_over(db: Database) -> None:
    assert await Lease(db, "job", "crashed", 0.01).hold()
    await asyncio.sleep(0.05)
    assert await Lease(db, "job", "w2", 60).hold()


async def test_a_stopped_run_releases_the_lease_for_the_next_worker(db: Database) -> None:
    working = asyncio.Event()

    async def step() -> None:
        working.set()
        await asyncio.sleep(0.01)

    running = asyncio.create_task(Lease(db, "job", "w1", 60).run(step))
    await asyncio.wait_for(working.wait(), timeout=5)
    assert not await Lease(db, "job", "w2", 60).hold()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert await Lease(db, "job", "w2", 60).hold()


async def test_renewal_reports_a_lost_lease(db: Database) -> None:
    mine = Lease(db, "job", "w1", 0.03)
    assert await mine.hold()
    await asyncio.sleep(0.05)
    assert await Lease(db, "job", "w2", 60).hold()
    assert not await mine.renew_if_due()


async def test_an_intake_takes_the_free_leases_of_its_batch_in_one_statement(db: Database) -> None:
    assert await acquire(db, "conversation:2", "worker-b")  # another worker's run
    assert await acquire(db, "conversation:3", "worker-a", seconds=1)  # ours already
    async with db.transaction() as session:
        await session.execute(  # worker-c died and its lease ran out
            dialect_insert(session, LeaseRow).values(
                name="conversation:4",
                owner="worker-c",
                expires_at=utcnow() - timedelta(seconds=1),
                acquired_at=utcnow() - timedelta(seconds=60),
            )
        )
    names = ["conversation:1", "conversation:2", "conversation:3", "conversation:4"]
    async with db.transaction() as session:
        held = await leases.try_acquire_many(session, [*names, "conversation:1"], "worker-a", 60)
        assert await leases.try_acquire_many(session, [], "worker-a", 60) == set()

    assert held == {"conversation:1", "conversation:3", "conversation:4"}
    assert await holder(db, "conversation:2") == "worker-b"
    async with db.transaction() as session:
        row = await session.get(LeaseRow, "conversation:3")
    assert row is not None and row.expires_at - utcnow() > timedelta(seconds=30)  # extended


async def test_a_workers_heartbeat_keeps_its_proactive_leases_and_no_one_elses(
    db: Database,
) -> None:
    # Worker names are free text: a LIKE wildcard in one must not reach another's leases.
    mine, theirs = "host_1", "hostX1"
    assert await acquire(db, "conversation:1", mine, seconds=1)
    assert await acquire(db, "conversation:2", leases.proactive_owner(mine), seconds=1)
    assert await acquire(db, "conversation:3", leases.proactive_owner(theirs), seconds=1)
    assert not await acquire(db, "conversation:2", mine)  # an inbound run of ours waits too

    assert await Heartbeat(db, mine, 600).beat() == 2
    async with db.transaction() as session:
        rows = {row.name: row for row in (await session.execute(select(LeaseRow))).scalars()}
    assert rows["conversation:1"].expires_at - utcnow() > timedelta(seconds=500)
    assert rows["conversation:2"].expires_at - utcnow() > timedelta(seconds=500)
    assert rows["conversation:3"].expires_at - utcnow() < timedelta(seconds=2)
