"""`GroupCommit`: small writes that arrive together share one transaction.

A delivery worker writes two small things per message (the claim before the request, the
outcome after it), each of which must be durable before the worker moves on. One at a time,
that is two commits a message; under load, many of them wait at the same moment. The first
writer commits at once; whoever arrives while that commit is in flight waits for the next one,
which carries them all. So an idle system pays no delay, and a busy one pays one commit per
batch instead of one per write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.store.db import Database, Tx, is_transient

T = TypeVar("T")


@dataclass(slots=True)
class _Write:
    fn: Callable[[Tx], Awaitable[Any]]
    done: asyncio.Future[Any]


class GroupCommit:
    """Runs each write in a transaction shared with the writes queued beside it.

    A write must be one that can run again on its own: when a shared transaction fails on
    the data (a value the database refuses), each of its writes is run again in a transaction
    of its own, so that error is only its write's and the others still commit. When it fails
    on the database (down, locked, connection lost), every write of it gets that error, as it
    would have alone: its commit may have landed, and only the writer knows what is safe then.
    """

    def __init__(self, db: Database, *, most: int = 100) -> None:
        self.db, self.most = db, most
        self._queue: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions committed so far: writes / commits is the batch size."""

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn(session)` in a committed transaction; its result, or its error."""
        # The caller may be cancelled; the write is not: it is in a batch already.
        return await asyncio.shield(self.submit(fn))

    def submit(self, fn: Callable[[Tx], Awaitable[T]]) -> asyncio.Future[T]:
        """Queue `fn` for the next transaction now, and wait for it later: its place in the
        order is taken at once (the order of writes is the order of `submit`s)."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(fn, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return done

    async def idle(self) -> None:
        """Return once every write submitted so far has committed or failed."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.most], self._queue[self.most :]
                await self._commit(batch)
        finally:
            self._flusher = None

    async def _commit(self, batch: list[_Write]) -> None:
        if len(batch) > 1:
            try:
                results = await self._together(batch)
            except Exception as error:
                if is_transient(error):
                    for write in batch:
                        _settle(write.done, error=error)
                    return
                # Someone's data: each write runs again alone and meets its own error.
            else:
                for write, result in zip(batch, results, strict=True):
                    _settle(write.done, result=result)
                return
        for write in batch:
            try:
                async with self.db.transaction() as session:
                    result = await write.fn(session)
                self.commits += 1
            except Exception as error:
                _settle(write.done, error=error)
            else:
                _settle(write.done, result=result)

    async def _together(self, batch: list[_Write]) -> list[Any]:
        async with self.db.transaction() as session:
            results = [await write.fn(session) for write in batch]
        self.commits += 1
        return results


def _settle(
    done: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
