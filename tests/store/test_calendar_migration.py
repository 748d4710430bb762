"""Migration 0011 on a database with meetings: each gets a UID and its booked time slot rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from bot.store.availability import book_slot
from bot.store.db import Database
from bot.store.migrate import alembic_config
from bot.store.models import Meeting, MeetingSlot
from tests.conftest import BACKENDS, _fresh_postgres

START = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def at_0010(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> AsyncIterator[Database]:
    """A database migrated up to revision 0010 only."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        assert postgres_url is not None
        await _fresh_postgres(postgres_url)
        url = postgres_url
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            if not db.is_sqlite:
                await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
            await connection.run_sync(_upgrade_to_0010)
        yield db
    finally:
        await db.dispose()


def _upgrade_to_0010(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "0010")


async def test_existing_meetings_get_uids_and_the_booked_ones_their_slot_rows(
    at_0010: Database,
) -> None:
    db = at_0010
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO contacts (id, name, tags, lead_score, custom_fields, unreachable, "
                "created_at, updated_at) VALUES (1, 'Ann', '[]', 0, '{}', false, :t, :t)"
            ),
            {"t": START},
        )
        for meeting_id, status, owner in ((1, "booked", "Sam  Lee"), (2, "cancelled", "Sam Lee")):
            await connection.execute(
                text(
                    "INSERT INTO meetings (id, contact_id, starts_at, duration_minutes, topic, "
                    "status, owner, created_at) VALUES (:id, 1, :s, 60, '', :status, :owner, :t)"
                ),
                {"id": meeting_id, "s": START, "status": status, "owner": owner, "t": START},
            )

    await db.migrate()

    async with db.transaction() as session:
        found = (await session.execute(select(Meeting).order_by(Meeting.id))).scalars().all()
        slots = (await session.execute(select(MeetingSlot))).scalars().all()
        clash = await book_slot(
            session, None, contact_id=1, starts_at=START + timedelta(minutes=45), owner="sam lee"
        )
    assert [(m.uid, m.sequence, m.changed_at) for m in found] == [
        ("meeting-1@crmbot", 0, START),
        ("meeting-2@crmbot", 0, START),
    ]
    assert sorted((s.owner, s.slot_start, s.meeting_id) for s in slots) == [
        ("sam lee", START + timedelta(minutes=15 * n), 1) for n in range(4)
    ]
    assert clash is None  # the old booking holds its time against new ones
