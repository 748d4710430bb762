"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite is the embedded default, tuned for a real workload rather than a demo: WAL so readers
never block the writer, a busy timeout so concurrent writers queue instead of failing, and
`BEGIN IMMEDIATE` so a transaction takes the write lock up front (a deferred transaction that
upgrades from read to write can fail with "database is locked" without waiting). Statements
run on the event loop's thread (`InlineConnection`); only the wait for another process's lock
goes to a thread.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.core.settings import DEFAULT_POOL_SIZE
from bot.store.sqlite_inline import InlineConnection

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "crmbot_read_only"
"""Execution option of a connection that only reads: on SQLite its transaction is deferred."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncEngine:
    """Create the async engine for `url`, creating a SQLite file's directory if needed.

    On PostgreSQL the pool is the process's hard cap: no overflow, so that several workers
    never open more than `workers x pool_size` connections between them, and a burst waits
    for a free connection here instead of being refused by the server ("too many clients").
    Runs hold a connection only for short transactions, never across a model call, so a few
    connections serve hundreds of runs.
    """
    if not is_sqlite(url):
        return create_async_engine(
            url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=0
        )
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    (path,), _ = parsed.get_dialect()().create_connect_args(parsed)  # the file, as pysqlite's
    opened = functools.partial(InlineConnection, path, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
    engine = create_async_engine(url, echo=echo, async_creator=opened)
    _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _use_wal(cursor: Any) -> None:
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except Exception as error:
        # Two connections switching a new database to WAL at once: SQLite answers the loser
        # "locked" at once, without waiting. WAL mode is stored in the file, so this
        # connection uses it as soon as the winner's switch is done.
        if "locked" not in str(error):
            raise


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
