"""The store books an owner's slot once: the unique index decides, not a look beforehand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.store import staff_members
from bot.store.availability import (
    SLOT_KEY,
    book_slot,
    booked_spans,
    cancel_slot,
    hours_of,
    move_slot,
    set_hours,
    slot_keys,
)
from bot.store.contacts import Identity, resolve_contact
from bot.store.db import Database
from bot.store.models import Contact, Meeting, MeetingSlot, ScoreChange
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
        sams = await book_slot(session, None, contact_id=ann, starts_at=SLOT, owner="Sam")
        assert sams is not None
        assert await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="Kim")
        assert await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="sam") is None
        assert await cancel_slot(session, sams)
        assert not await cancel_slot(session, sams)  # once
        assert await book_slot(session, None, contact_id=bob, starts_at=SLOT, owner="Sam")
        spans = await booked_spans(session, "Sam", SLOT, SLOT + timedelta(hours=1))
    assert spans == [(SLOT, SLOT + timedelta(minutes=30))]
    assert (sams.status, sams.sequence) == ("cancelled", 1)


async def _book(
    db: Database, contact_id: int, starts_at: datetime, minutes: int, hold: asyncio.Event | None
) -> Meeting | None:
    """Book in a transaction of its own; with `hold`, keep it open until it is set."""
    async with db.transaction() as session:
        meeting = await book_slot(
            session,
            None,
            contact_id=contact_id,
            starts_at=starts_at,
            duration_minutes=minutes,
            owner="team",
        )
        if hold is not None:
            hold.set()
            await asyncio.sleep(0.3)  # the other booking waits on the key (or the lock) now
        return meeting


async def test_two_transactions_booking_overlapping_times_with_different_starts_book_one(
    database_url: str,
) -> None:
    # Two engines, as two processes would have: on SQLite the second waits for the first's
    # write lock, on PostgreSQL for its uncommitted key; then it fails on the slot key.
    first_db, second_db = Database(database_url), Database(database_url)
    try:
        ann, bob = await _contacts(first_db, "Ann", "Bob")
        inserted = asyncio.Event()

        async def second() -> Meeting | None:
            await inserted.wait()
            return await _book(second_db, bob, SLOT + timedelta(minutes=30), 30, None)

        won, lost = await asyncio.gather(_book(first_db, ann, SLOT, 60, inserted), second())

        assert won is not None and lost is None
        async with first_db.transaction() as session:
            rows = (await session.execute(select(Meeting.contact_id))).scalars().all()
            slots = (await session.execute(select(MeetingSlot))).scalars().all()
        assert rows == [ann]
        assert sorted(s.slot_start for s in slots) == [
            SLOT + timedelta(minutes=15 * n) for n in range(4)
        ]
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_back_to_back_meetings_both_fit_and_an_off_grid_one_takes_what_it_touches(
    db: Database,
) -> None:
    ann, bob, cy = await _contacts(db, "Ann", "Bob", "Cy")
    kathmandu = datetime(2030, 5, 6, 3, 15, tzinfo=UTC)  # 09:00 there
    async with db.transaction() as session:
        assert await book_slot(session, None, contact_id=ann, starts_at=kathmandu, owner="team")
        later = kathmandu + timedelta(minutes=30)
        assert await book_slot(session, None, contact_id=bob, starts_at=later, owner="team")
        overlapping = kathmandu + timedelta(minutes=20)
        refused = await book_slot(session, None, contact_id=cy, starts_at=overlapping, owner="team")
        assert refused is None
    assert slot_keys(datetime(2030, 5, 6, 9, 20, tzinfo=UTC), 30) == [
        datetime(2030, 5, 6, 9, 15, tzinfo=UTC),
        datetime(2030, 5, 6, 9, 30, tzinfo=UTC),
        datetime(2030, 5, 6, 9, 45, tzinfo=UTC),
    ]


async def test_a_move_takes_the_new_time_and_frees_the_old_or_changes_nothing(
    db: Database,
) -> None:
    ann, bob = await _contacts(db, "Ann", "Bob")
    async with db.transaction() as session:
        mine = await book_slot(session, None, contact_id=ann, starts_at=SLOT, owner="team")
        theirs = SLOT + timedelta(hours=2)
        assert await book_slot(session, None, contact_id=bob, starts_at=theirs, owner="team")
        assert mine is not None
        assert await move_slot(session, mine, SLOT + timedelta(minutes=15), 30)  # overlaps itself
        assert not await move_slot(session, mine, theirs - timedelta(minutes=15), 30)
        assert (mine.starts_at, mine.sequence) == (SLOT + timedelta(minutes=15), 1)
        just_before = SLOT - SLOT_KEY * 2  # the old time is free again: this ends at SLOT + 15
        assert await book_slot(
            session, None, contact_id=bob, starts_at=just_before, duration_minutes=45, owner="team"
        )
        keys = (
            await session.execute(
                select(MeetingSlot.slot_start).where(MeetingSlot.meeting_id == mine.id)
            )
        ).scalars()
        assert sorted(keys) == [SLOT + timedelta(minutes=15), SLOT + timedelta(minutes=30)]


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
