"""A lease gives a job to one worker at a time, and a clean stop hands it on at once."""

from __future__ import annotations

import asyncio

from bot.store.db import Database
from bot.store.leases import Lease


async def test_only_one_worker_holds_the_lease(db: Database) -> None:
    first, second = Lease(db, "job", "w1", 60), Lease(db, "job", "w2", 60)
    assert await first.hold()
    assert not await second.hold()
    assert await first.hold()  # renewing one's own lease


async def test_an_expired_lease_is_taken_over(db: Database) -> None:
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
