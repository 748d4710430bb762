"""What a meeting slot needs from the store: whose hours, what is booked, and the booking.

The booking relies on the unique index `uq_meetings_owner_slot` (one booked meeting per owner
and start), not on a look beforehand: of two conversations racing for one slot, the second
insert fails inside its own savepoint and the caller is told the slot is taken.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store import staff_members
from bot.store.deals import book_meeting
from bot.store.models import Deal, Meeting

LONGEST_MEETING = timedelta(minutes=120)
"""A meeting that began this long before a window can still overlap it."""


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


async def book_slot(session: AsyncSession, deal: Deal | None, **fields: Any) -> Meeting | None:
    """Book a meeting (the columns of `Meeting` as keywords, `owner` and `starts_at` among
    them); None when the owner already has a meeting booked at that start."""
    try:
        async with session.begin_nested():
            return await book_meeting(session, deal, **fields)
    except IntegrityError:
        return None
