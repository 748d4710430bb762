"""`Database`: the engine, its sessions, and start-up (migrations) in one object."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeAlias

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.core.errors import DatabaseUnavailable
from bot.core.settings import DEFAULT_POOL_SIZE
from bot.store.engine import READ_ONLY, create_engine, is_sqlite, session_factory
from bot.store.migrate import upgrade_database


class _TaskTurn:
    """A lock a task may take again while it holds it (a transaction opened inside another
    behaves exactly as it would without the lock)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None


Tx: TypeAlias = AsyncSession
"""A transaction in progress. Layers above the store hold it and pass it to store functions;
only the store runs statements on it."""

_ON_ROLLBACK = "crmbot.on_rollback"


def on_rollback(session: Tx, undo: Callable[[], None]) -> None:
    """Call `undo` if the transaction of `session` does not commit: for state kept in memory
    on the strength of writes that are then rolled back."""
    session.info.setdefault(_ON_ROLLBACK, []).append(undo)


class Database:
    """Owns the engine; `transaction()` yields a session inside one committed transaction."""

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, pool_size=pool_size)
        self._sessions = session_factory(self.engine)
        # SQLite has one writer at a time. Queuing this process's transactions here hands the
        # lock over at once, in order, instead of leaving each connection to poll for it in
        # SQLite's busy handler (which sleeps in growing steps and makes a long tail under load).
        # Other processes on the same file still queue through the busy timeout.
        self._sqlite_turn = _TaskTurn() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    async def migrate(self) -> None:
        """Bring the schema up to date; `DatabaseUnavailable`, in one line with the password
        hidden, when the database cannot be reached at all."""
        try:
            await upgrade_database(self.engine)
        except (OSError, OperationalError, InterfaceError) as error:
            where = make_url(self.url).render_as_string(hide_password=True)
            cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
            reason = " ".join(str(cause).split())[:300] or type(cause).__name__
            raise DatabaseUnavailable(f"cannot open the database {where}: {reason}") from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits on success and rolls back on error."""
        turn = self._sqlite_turn.hold() if self._sqlite_turn else contextlib.nullcontext()
        async with turn, self._sessions() as session:
            try:
                async with session.begin():
                    yield session
            except BaseException:
                for undo in reversed(session.info.pop(_ON_ROLLBACK, [])):
                    undo()
                raise

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only: nothing is committed (closing it ends the transaction).

        On SQLite it takes no write lock and waits for no writer (WAL readers see the last
        commit); use it where a step reads and decides but changes nothing, so the step
        costs no commit at all.
        """
        # No explicit rollback: it would expire what was loaded, which callers may still read;
        # closing the session detaches the objects and hands the connection back rolled back.
        # Reads take their turn too: on SQLite a connection per waiting run would only move
        # the queue into the pool, where writers then wait behind readers.
        turn = self._sqlite_turn.hold() if self._sqlite_turn else contextlib.nullcontext()
        async with turn, self._sessions() as session:
            await session.connection(execution_options={READ_ONLY: True})
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57P", "40001", "40P01")
"""PostgreSQL error codes of the server's state, not the data's: connection exceptions,
insufficient resources (among them "too many clients"), a server shutting down or starting,
and a serialization failure or deadlock (the transaction may simply be run again)."""


def is_transient(error: BaseException) -> bool:
    """Whether a store failure is the database's (down, locked, connection lost, out of
    connections) rather than the data's (a value it cannot hold). Only the data's justify
    setting the input aside."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
        if sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES):
            return True
    return isinstance(
        error, OperationalError | InterfaceError | DisconnectionError | PoolTimeout | OSError
    )
