"""What a meeting slot needs from the store: whose hours, what is booked, and the booking.

A booked meeting holds one `MeetingSlot` row per quarter hour it touches on its owner's
calendar, under the primary key (owner, slot_start). The booking, the move and the
cancellation write those rows in the caller's transaction; of two transactions racing for
overlapping times (the same start, or different starts that overlap) the second fails on the
key inside its own savepoint and is told the time is taken. Nothing here looks first and then
inserts.

Why a quarter hour and not the 30-minute slot: every UTC offset in use is a whole number of
quarter hours, so the slot starts of any working hours that open on a quarter hour (09:00 in
Kathmandu is 03:15 UTC) fall on this grid and back-to-back meetings never share a key. A
meeting that starts off the grid takes the quarter hours it touches, which can only refuse a
neighbour, never let an overlap in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store import staff_members
from bot.store.deals import book_meeting
from bot.store.models import Deal, Meeting, MeetingSlot
from bot.store.types import utcnow

LONGEST_MEETING = timedelta(minutes=120)
"""A meeting that began this long before a window can still overlap it."""
SLOT_KEY = timedelta(minutes=15)
"""The grid of `MeetingSlot` rows (see the module's docstring)."""
_GRID_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


async def hours_of(session: AsyncSession, owner: str) -> str | None:
    """The staff member's own working hours (BUSINESS_HOURS format), or None: none set, or
    no staff member of that name (a team)."""
    member = await staff_members.find(session, owner)
    return member.hours if member is not None else None


async def set_hours(session: AsyncSession, name: str, hours: str | None) -> None:
    """Give a staff member their own working hours (None: back to BUSINESS_HOURS)."""
    member = await staff_members.get(session, name)
    member.hours = hours
    await session.flush()


async def booked_spans(
    session: AsyncSession, owner: str, since: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """(start, end) of the owner's booked meetings that overlap `since`..`until`."""
    query = select(Meeting.starts_at, Meeting.duration_minutes).where(
        Meeting.owner == owner,
        Meeting.status == "booked",
        Meeting.starts_at < until,
        Meeting.starts_at > since - LONGEST_MEETING,
    )
    spans = [
        (start, start + timedelta(minutes=minutes))
        for start, minutes in (await session.execute(query)).all()
    ]
    return [(start, end) for start, end in spans if end > since]


def slot_keys(starts_at: datetime, minutes: int) -> list[datetime]:
    """The quarter hours (UTC) a meeting of `minutes` from `starts_at` touches."""
    start = starts_at.astimezone(UTC)
    key = start - (start - _GRID_ORIGIN) % SLOT_KEY
    end = start + timedelta(minutes=minutes)
    keys: list[datetime] = []
    while key < end:
        keys.append(key)
        key += SLOT_KEY
    return keys


def owner_key(owner: str) -> str:
    """The calendar a slot row is on: deals name their owner in any case and spacing."""
    return " ".join(owner.split()).lower()


async def _reserve(session: AsyncSession, meeting: Meeting) -> None:
    if not meeting.owner:
        raise ValueError("a meeting is booked on an owner's calendar: owner is required")
    owner = owner_key(meeting.owner)
    # A bulk INSERT, not ORM objects: the rows are never read back as objects, and a key the
    # session already holds (read earlier, or just deleted by a move) must simply hit the key.
    rows = [
        {"owner": owner, "slot_start": key, "meeting_id": meeting.id}
        for key in slot_keys(meeting.starts_at, meeting.duration_minutes)
    ]
    await session.execute(insert(MeetingSlot), rows)


async def _release(session: AsyncSession, meeting: Meeting) -> None:
    await session.execute(delete(MeetingSlot).where(MeetingSlot.meeting_id == meeting.id))


async def book_slot(session: AsyncSession, deal: Deal | None, **fields: Any) -> Meeting | None:
    """Book a meeting (the columns of `Meeting` as keywords, `owner` and `starts_at` among
    them); None when any part of that time is already booked on the owner's calendar."""
    try:
        async with session.begin_nested():
            meeting = await book_meeting(session, deal, **fields)
            await _reserve(session, meeting)
            return meeting
    except IntegrityError:
        return None


async def move_slot(
    session: AsyncSession, meeting: Meeting, starts_at: datetime, minutes: int
) -> bool:
    """Move a booked meeting to `starts_at` for `minutes`, one SEQUENCE on; False (and the
    meeting as it was) when part of the new time is booked already."""
    if meeting.status != "booked":
        raise ValueError(f"meeting {meeting.id} is {meeting.status}; only a booked one moves")
    try:
        async with session.begin_nested():
            await _release(session, meeting)
            meeting.starts_at, meeting.duration_minutes = starts_at, minutes
            meeting.sequence += 1
            meeting.changed_at = utcnow()
            await session.flush()
            await _reserve(session, meeting)
    except IntegrityError:
        await session.refresh(meeting)  # the savepoint is gone: read back what is stored
        return False
    return True


async def cancel_slot(session: AsyncSession, meeting: Meeting) -> bool:
    """Cancel a booked meeting and free its time, one SEQUENCE on; False if it was not
    booked (cancelled already)."""
    if meeting.status != "booked":
        return False
    await _release(session, meeting)
    meeting.status = "cancelled"
    meeting.sequence += 1
    meeting.changed_at = utcnow()
    await session.flush()
    return True
