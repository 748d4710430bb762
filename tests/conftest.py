"""Suite-wide guards and fixtures.

- No network beyond loopback, no stray API keys from the developer's environment.
- `database_url`: a fresh, migrated database per test, on SQLite always and also on
  PostgreSQL when TEST_DATABASE_URL is set (every test that uses it runs on both).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.db import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.harness import Harness
from tests.support.pg_reset import Snapshot
from tests.support.telegram_rig import STAFF_CHAT

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex

for _name in list(os.environ):
    # A developer's real keys and settings must never reach a test.
    if (
        _name.endswith(("_API_KEY", "_BASE_URL"))
        or _name.startswith(("LLM_", "TELEGRAM_", "IMAP_", "SMTP_", "EMAIL_"))
        or (_name in {"DATABASE_URL", "DEFAULT_AGENT"})
    ):
        del os.environ[_name]

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _check_address(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        raise RuntimeError(f"tests may only connect to loopback, not {host}")
    # AF_UNIX paths (the local PostgreSQL socket) are local by definition.


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read `.env` from the working directory; a developer's file must not leak in.
    monkeypatch.chdir(tmp_path)


def _migrate(url: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    asyncio.run(run())


async def _admin(base: URL, statement: str) -> None:
    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test process; each test gets a copy of it (migrating
    every test's database from the first revision cost about half a second a test)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A database of this test process's own on the PostgreSQL server, dropped at the end,
    and a migrated template it is recreated from when a test changed its schema.

    Several pytest processes (a developer's, CI's, xdist's workers) may share one server;
    each gets its own, named by its process id.
    """
    if PG_URL is None:
        yield None
        return
    base = make_url(PG_URL)
    name = f"{base.database}_{os.getpid()}"
    template = f"{name}_template"
    for database in (name, template):
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    asyncio.run(_admin(base, f'CREATE DATABASE "{template}"'))
    _migrate(base.set(database=template).render_as_string(hide_password=False))
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    for database in (name, template):
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_snapshot(postgres_url: str | None) -> Snapshot | None:
    """The migrated state of this process's database, read once, so that a test whose schema
    is untouched gets it back in place instead of a new copy of the template."""
    return None if postgres_url is None else asyncio.run(Snapshot.take(postgres_url))


async def _fresh_postgres(url: str, snapshot: Snapshot | None = None) -> None:
    """Give the test's database the migrated template's schema and contents: reset in place
    to `snapshot` when the last test left the schema as it was, else (or without a snapshot)
    a new copy of the template."""
    if snapshot is not None and await snapshot.restore(url):
        return
    target = make_url(url)
    name = target.database
    base = target.set(database=make_url(PG_URL).database) if PG_URL else target
    await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{name}_template"')


@pytest.fixture(params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_url: str | None,
    postgres_snapshot: Snapshot | None,
) -> str:
    """A migrated, empty database for this test."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    assert postgres_url is not None
    await _fresh_postgres(postgres_url, postgres_snapshot)
    return postgres_url


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    """An app whose default agent is the permissive `tester` agent, on a fake model."""
    h = Harness(database_url, default_agent="tester", run_timeout_seconds=5)
    await h.app.start()
    await h.add_agent()
    try:
        yield h
    finally:
        await h.app.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API on 127.0.0.1, with the staff group (a forum supergroup) in it."""
    async with FakeTelegram() as server:
        server.add_supergroup(STAFF_CHAT, "Staff")
        yield server
