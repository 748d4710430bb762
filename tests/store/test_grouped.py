"""Writes that wait at the same moment share a commit; each still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.exc import OperationalError

from bot.store import leases
from bot.store.db import Database, Tx
from bot.store.grouped import GroupCommit


def take(name: str, *, fails: BaseException | None = None) -> Callable[[Tx], Awaitable[str]]:
    async def write(session: Tx) -> str:
        await leases.try_acquire(session, name, "worker-1", 60)
        if fails is not None:
            raise fails
        return name

    return write


async def held(db: Database, *names: str) -> dict[str, str | None]:
    async with db.reading() as session:
        return {name: await leases.holder(session, name) for name in names}


async def test_a_write_alone_commits_at_once(db: Database) -> None:
    group = GroupCommit(db)
    assert await group.write(take("a")) == "a"
    assert group.commits == 1
    assert await held(db, "a") == {"a": "worker-1"}


async def test_writes_waiting_together_share_one_commit_in_their_order(db: Database) -> None:
    group = GroupCommit(db)
    results = await asyncio.gather(*(group.write(take(name)) for name in "abcde"))
    assert results == list("abcde")
    assert group.commits == 1
    assert set((await held(db, *"abcde")).values()) == {"worker-1"}


async def test_writes_queued_during_a_commit_go_in_the_next_one(db: Database) -> None:
    group = GroupCommit(db)
    first = group.submit(take("a"))
    await asyncio.sleep(0)  # the first commit has started: the rest wait for the next
    later = [group.submit(take(name)) for name in "bcd"]
    await asyncio.gather(first, *later)
    assert group.commits == 2


async def test_a_write_the_database_refuses_fails_alone(db: Database) -> None:
    group = GroupCommit(db)
    results = await asyncio.gather(
        group.write(take("a")),
        group.write(take("b", fails=ValueError("not a value it holds"))),
        group.write(take("c")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert await held(db, "a", "b", "c") == {"a": "worker-1", "b": None, "c": "worker-1"}


async def test_a_database_that_goes_away_fails_every_write_of_the_batch(db: Database) -> None:
    """Its commit may have landed: each writer decides what is safe, as it would alone."""
    group = GroupCommit(db)
    gone = OperationalError("COMMIT", None, ConnectionResetError("connection reset"))
    results = await asyncio.gather(
        group.write(take("a")),
        group.write(take("b", fails=gone)),
        return_exceptions=True,
    )
    assert all(isinstance(r, OperationalError) for r in results)
    assert await held(db, "a", "b") == {"a": None, "b": None}
    assert group.commits == 0


async def test_a_cancelled_writer_does_not_cancel_its_write(db: Database) -> None:
    group = GroupCommit(db)
    writer = asyncio.create_task(group.write(take("a")))
    await asyncio.sleep(0)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    await group.idle()
    assert await held(db, "a") == {"a": "worker-1"}
