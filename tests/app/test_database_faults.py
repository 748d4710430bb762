"""The database goes away mid-load, or is locked by someone else: the bot waits it out.

PostgreSQL restarted: the bot reaches the server through a TCP proxy on 127.0.0.1, and while
messages come in, every server process of the bot's is terminated (`pg_terminate_backend`,
what a restart does to each open connection) and the proxy refuses new connections for a
while, as a server that is starting does. SQLite locked: a second process holds the write lock
(`BEGIN IMMEDIATE`) for longer than the busy timeout, so the bot's writes fail with "database
is locked". In both cases the whole Telegram channel runs against the fake Bot API, and every
message must be recorded once and answered once when the database is back.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import engine as store_engine
from bot.store.db import Database
from bot.store.models import Message, OutboxItem
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_rig import TelegramRig, eventually

USERS = range(600, 610)


def _model() -> FunctionModel:
    return FunctionModel(lambda request: turn(f"reply to {request.messages[-1].text}"))  # type: ignore[union-attr]


async def _settled(url: str, expected: int) -> list[Message]:
    """The inbound messages, once `expected` are recorded, all handled, and nothing queued."""
    db = Database(url)
    try:
        async with db.reading() as session:
            inbound = list(
                (await session.execute(select(Message).where(Message.direction == "in")))
                .scalars()
                .all()
            )
            queued = (
                await session.execute(
                    select(OutboxItem.id).where(OutboxItem.status.in_(("pending", "sending")))
                )
            ).all()
    finally:
        await db.dispose()
    done = len(inbound) >= expected and all(m.handled_at for m in inbound) and not queued
    return inbound if done else []


def _write(fake: FakeTelegram, wave: str) -> list[str]:
    written = []
    for user in USERS:
        fake.user_message(user, f"{wave} from {user}", first_name=f"P{user}")
        written.append(f"{wave} from {user}")
    return written


def _assert_each_answered_once(
    fake: FakeTelegram, inbound: list[Message], written: list[str]
) -> None:
    assert sorted(m.text for m in inbound) == sorted(written)  # recorded once each, none lost
    for user in USERS:
        replies = texts(fake, user)
        assert len(replies) == len(set(replies)), replies  # nothing sent twice
        assert replies and replies[-1].endswith(f"second from {user}")  # the last was answered
        assert all(r.startswith("reply to ") for r in replies)
    answered = Counter(
        line
        for user in USERS
        for reply in texts(fake, user)
        for line in reply.removeprefix("reply to ").splitlines()
    )
    assert set(answered) == set(written)  # each message in exactly one reply
    assert max(answered.values()) == 1


async def test_a_postgresql_restart_mid_load_loses_and_doubles_nothing(
    fake: FakeTelegram, database_url: str
) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("a PostgreSQL restart needs PostgreSQL: TEST_DATABASE_URL")
    async with TcpProxy(url.port or 5432, url.host or "127.0.0.1") as proxy:
        through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
        rig = TelegramRig(fake, through_proxy)
        await rig.start(_model())
        try:
            written = _write(fake, "first")
            await eventually(lambda: len(fake.sent()) >= 3, within=20)  # mid-load
            proxy.refuse_for(3.0)
            terminated = await _terminate_backends(database_url)
            assert terminated > 0
            proxy.cut_all()  # connections that were mid-handshake or idle go as well
            written += _write(fake, "second")  # the bot is down to no database at all
            await asyncio.sleep(3.0)
            inbound = await eventually(lambda: _settled(database_url, len(written)), within=60)
            _assert_each_answered_once(fake, inbound, written)
            assert proxy.refused > 0  # the bot did try while the server was down
        finally:
            await rig.stop()


async def _terminate_backends(database_url: str) -> int:
    """End every other connection to the test's database, as a server shutdown does."""
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            query = text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()


HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


async def test_sqlite_locked_by_another_process_past_the_busy_timeout_loses_nothing(
    fake: FakeTelegram, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_url(database_url).database
    if make_url(database_url).get_backend_name() != "sqlite" or not path:
        pytest.skip("the write lock of another process is SQLite's")
    # The bot waits 30 s for a lock; a short wait makes "database is locked" happen here.
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    rig = TelegramRig(fake, database_url)
    await rig.start(_model())
    holder: asyncio.subprocess.Process | None = None
    try:
        written = _write(fake, "first")
        await eventually(lambda: len(fake.sent()) >= 3, within=20)
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_THE_WRITE_LOCK, path, "4", stdout=subprocess.PIPE
        )
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        written += _write(fake, "second")
        await asyncio.sleep(4.0)
        inbound = await eventually(lambda: _settled(database_url, len(written)), within=60)
        _assert_each_answered_once(fake, inbound, written)
    finally:
        if holder is not None and holder.returncode is None:
            holder.kill()
            await holder.wait()
        await rig.stop()
