"""SQLite's statements run on the event loop's thread; only a wait for another process's lock
leaves it, so the bot never stops while another process writes."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from bot.store import leases
from bot.store.db import Database


@pytest.fixture
def sqlite_path(database_url: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        pytest.skip("the inline connection is SQLite's")
    return url.database


async def test_a_write_waits_for_another_processs_lock_without_stopping_the_loop(
    db: Database, sqlite_path: str
) -> None:
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with db.transaction() as session:
            await leases.try_acquire(session, "after-the-lock", "worker-1", 60)

    ticker = asyncio.create_task(tick())
    try:
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        assert not writing.done()  # waiting for the lock...
        assert ticks >= 10  # ...while the loop goes on
        other.execute("ROLLBACK")
        await asyncio.wait_for(writing, timeout=10)
    finally:
        ticker.cancel()
        other.close()
    async with db.reading() as session:
        assert await leases.holder(session, "after-the-lock") == "worker-1"


async def test_reads_go_on_while_another_process_writes(db: Database, sqlite_path: str) -> None:
    async with db.transaction() as session:
        await leases.try_acquire(session, "before", "worker-1", 60)
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        async with db.reading() as session:  # WAL: a reader never waits for a writer
            assert await asyncio.wait_for(leases.holder(session, "before"), 1) == "worker-1"
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_writer_cancelled_while_it_waits_for_the_lock_leaves_the_loop_and_store_usable(
    db: Database, sqlite_path: str
) -> None:
    """The wait on a thread cannot be cut short: the connection is left to it until it is
    done, and is then rolled back and reused, with the loop running all along."""
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def write(name: str) -> None:
        async with db.transaction() as session:
            await leases.try_acquire(session, name, "worker-1", 60)

    try:
        writing = asyncio.create_task(write("cancelled"))
        await asyncio.sleep(0.3)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() - started < 1  # not stopped behind the wait
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(write("after"), timeout=10)
    async with db.reading() as session:
        assert await leases.holder(session, "after") == "worker-1"
        assert await leases.holder(session, "cancelled") is None
