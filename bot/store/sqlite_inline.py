"""`InlineConnection`: aiosqlite's connection, its calls run on the event loop's own thread.

aiosqlite hands every call to a thread of its own and waits for the answer: on a small
machine that hop costs more than the statement (`select 1`: 207 µs through aiosqlite, 5 µs
inline; 609 and 45 µs through SQLAlchemy), and the hot path runs dozens of statements a
message. A statement on a local SQLite file in WAL mode is microseconds of work that never
waits for anything, with one exception: a lock held by another process (a writer, or a
checkpoint). So each call runs inline with no busy wait, and only a call that finds the
database locked is run again on a thread, where it may wait out the busy timeout without
stopping the bot. Writers of this process never meet each other here: `Database` gives them
the file one at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

LOCKED = ("database is locked", "database table is locked", "database is busy")
_WAITING_THREADS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="sqlite-lock-wait")
"""Where calls wait for another process's lock (rare: this process's writers never meet)."""


class _RunAtOnce:
    """Stands in for aiosqlite's queue to its thread, which SQLAlchemy's dialect uses
    directly to set the isolation level: the function runs now, its future is answered."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:  # handed to the waiter, as the thread would
            if future is not None and not future.done():
                future.set_exception(error)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread (see the module's doc)."""

    def __init__(self, database: str, *, busy_timeout_ms: int, **kwargs: Any) -> None:
        connect = partial(sqlite3.connect, database, check_same_thread=False, **kwargs)
        super().__init__(connect, iter_chunk_size=64)
        self._tx = _RunAtOnce()  # type: ignore[assignment]
        self._busy_timeout_ms = busy_timeout_ms
        self._waiting_call: concurrent.futures.Future[Any] | None = None
        """A call waiting on a thread for another process's lock. It cannot be cut short,
        and its caller may have been cancelled meanwhile: nothing else uses the connection
        until it is done (two threads in one connection at once crash the process)."""
        self._handover = threading.Lock()
        """Held while the connection passes between the loop's thread and a waiting one."""

    def __await__(self) -> Any:
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
            self._connection.execute("PRAGMA busy_timeout=0")  # a lock goes to the thread
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        waiting = self._waiting_call
        if waiting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(waiting))
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as error:
            if not str(error).startswith(LOCKED):
                raise
        # Another process holds the lock: wait for it off the loop, as aiosqlite would have.
        # A thread's future, not a task: it is done only when the thread is done with the
        # connection, whatever happens to its caller (cancelled, or the loop closing).
        with self._handover:
            call = _WAITING_THREADS.submit(self._waiting, fn, *args, **kwargs)
            self._waiting_call = call
        call.add_done_callback(self._done_waiting)
        return await asyncio.wrap_future(call)

    def _done_waiting(self, call: concurrent.futures.Future[Any]) -> None:
        """On the thread, once its call is done: the connection is free again (and closed,
        if it was closed meanwhile)."""
        with self._handover:
            if self._waiting_call is call:
                self._waiting_call = None
            if not self._running and self._connection is not None:
                self._connection.close()
                self._connection = None

    def _waiting(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection = self._conn
        connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            return fn(*args, **kwargs)
        finally:
            connection.execute("PRAGMA busy_timeout=0")

    def stop(self) -> None:
        with self._handover:
            self._running = False
            if self._waiting_call is not None:
                return  # closed by `_done_waiting`, once the waiting call is done with it
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def close(self) -> None:
        self.stop()
