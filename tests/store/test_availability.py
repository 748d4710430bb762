"""The store books an owner's slot once: the unique index decides, not a look beforehand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from bot.store import staff_members
from bot.store.availability import book_slot, booked_spans, hours_of, set_hours
from bot.store.contacts import Identity, resolve_contact
from bot.store.db import Database
from bot.store.models import Contact, Meeting, ScoreChange
from bot.store.scores import latest_change, record_score

SLOT = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)


async def _contacts(db: Database, *names: str) -> list[int]:
    async with db.transaction() as session:
        return [
            (await resolve_contact(session, Identity("console", name, name=name))).id
            for name in names
        ]


async def test_two_transactions_booking_one_slot_at_once_leave_one_meeting(db: Database) -> None:
    ann, bob = await _contacts(db, "Ann", "Bob")
    first_inserted = asyncio.Event()

    async def first() -> Meeting | None:
        async with db.transaction() as session:
            meeting = await book_slot(session, None, contact_id=ann, starts_at=SLOT, owner="team")
            first_inserted.set()
            await asyncio.sleep(0.3)  # the second insert waits on the index meanwhile
            return meeting

    async def second() -> Meeting | None:
        await first_inserted.wait()
        async with db.transaction() as session:
            return await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="team")

    won, lost = await asyncio.gather(first(), second())

    assert won is not None and lost is None
    async with db.transaction() as session:
        rows = (await session.execute(select(Meeting.contact_id))).scalars().all()
    assert rows == [ann]


async def test_the_slot_is_per_owner_and_a_cancelled_meeting_frees_it(db: Database) -> None:
    ann, bob = await _contacts(db, "Ann", "Bob")
    async with db.transaction() as session:
        assert await book_slot(session, None, contact_id=ann, starts_at=SLOT, owner="Sam")
        assert await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="Kim")
        await session.execute(
            update(Meeting).where(Meeting.owner == "Sam").values(status="cancelled")
        )
        assert await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="Sam")
        spans = await booked_spans(session, "Sam", SLOT, SLOT + timedelta(hours=1))
    assert spans == [(SLOT, SLOT + timedelta(minutes=30))]


async def test_a_staff_members_hours_are_theirs_and_anyone_else_has_none(db: Database) -> None:
    async with db.transaction() as session:
        await staff_members.add(session, "Sam")
        await set_hours(session, "Sam", "mon-thu 08:00-12:00")
        assert await hours_of(session, "sam") == "mon-thu 08:00-12:00"
        assert await hours_of(session, "team") is None


async def test_a_score_change_is_kept_with_its_reasons_and_no_change_adds_nothing(
    db: Database,
) -> None:
    [ann] = await _contacts(db, "Ann")
    async with db.transaction() as session:
        contact = await session.get(Contact, ann)
        assert contact is not None
        first = await record_score(session, contact, 20, ["need mentions 'lead': +20"], run_id="r1")
        again = await record_score(session, contact, 20, ["need mentions 'lead': +20"])
        latest = await latest_change(session, ann)
        count = len((await session.execute(select(ScoreChange))).scalars().all())
    assert first is not None and again is None and latest is not None
    assert (latest.old_score, latest.new_score, latest.reasons, latest.run_id) == (
        0,
        20,
        ["need mentions 'lead': +20"],
        "r1",
    )
    assert (contact.lead_score, count) == (20, 1)
