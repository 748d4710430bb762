"""The migrations build exactly the schema the ORM models describe, idempotently and safely."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from bot.store.db import Database
from bot.store.migrate import schema_revision
from bot.store.models import AuditChain, Base, Contact, include_name
from tests.conftest import BACKENDS


def _schema_diffs(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True, "include_name": include_name},
    )
    return list(compare_metadata(context, Base.metadata))


async def schema_diffs(db: Database) -> list[Any]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(_schema_diffs)


@pytest.fixture(params=BACKENDS)
async def empty_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> AsyncIterator[str]:
    """A database with no tables at all (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    assert postgres_url is not None
    db = Database(postgres_url)
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await db.dispose()
    yield postgres_url


async def test_migrated_schema_matches_the_orm_models(db: Database) -> None:
    assert await schema_diffs(db) == []


async def test_schema_comparison_notices_a_missing_index(db: Database) -> None:
    # Guards the test above: an empty diff must mean "in step", not "comparison saw nothing".
    async with db.transaction() as session:
        await session.execute(text("DROP INDEX ix_outbox_due"))
    diffs = await schema_diffs(db)
    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_outbox_due")]


async def test_upgrading_a_migrated_database_again_changes_nothing(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Contact(name="Ann"))
    before = await schema_revision(db.engine)

    await db.migrate()

    current, head = await schema_revision(db.engine)
    assert (current, head) == before and current == head is not None
    assert await schema_diffs(db) == []
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 1
        assert (await session.execute(select(AuditChain))).scalars().all() == []


async def test_two_workers_migrating_a_fresh_database_at_once_both_succeed(empty_url: str) -> None:
    first, second = Database(empty_url), Database(empty_url)
    try:
        async with asyncio.timeout(30):  # without the migration lock they deadlock
            await asyncio.gather(first.migrate(), second.migrate())
        current, head = await schema_revision(first.engine)
        assert current == head is not None
        assert await schema_diffs(second) == []
        async with first.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(AuditChain)) == 0
            if first.is_sqlite:  # the loser of the race to switch to WAL still ends in WAL
                assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        await first.dispose()
        await second.dispose()
