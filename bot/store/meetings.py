"""Meetings as calendars need them: reads for the CLI, the feeds and the reminders, the
staff members' feed tokens and organizer addresses, and one contact's meetings for a run.

Booking, moving and cancelling (with the slot rows that forbid overlaps) are in
`bot.store.availability`; this module calls them and adds nothing to their guarantees.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import ConfigurationError, NotFoundError
from bot.store import availability, outbox, staff_members
from bot.store.models import Deal, Meeting, OutboxItem, StaffMember

TOKEN_BYTES = 24
"""A feed token's randomness: 192 bits, 32 URL-safe characters."""


async def get_meeting(session: AsyncSession, meeting_id: int, *, lock: bool = False) -> Meeting:
    """The meeting with this id; NotFoundError when there is none. With `lock`, the row is
    held until the transaction ends (PostgreSQL), so two changes of it take turns and each
    SEQUENCE is given once."""
    meeting = await session.get(
        Meeting, meeting_id, with_for_update=lock or None, populate_existing=lock
    )
    if meeting is None:
        raise NotFoundError(f"no meeting {meeting_id}")
    return meeting


async def list_meetings(
    session: AsyncSession, *, since: datetime, include_cancelled: bool = False, limit: int = 200
) -> list[Meeting]:
    """Meetings that start after `since`, soonest first."""
    query = select(Meeting).where(Meeting.starts_at >= since)
    if not include_cancelled:
        query = query.where(Meeting.status == "booked")
    query = query.order_by(Meeting.starts_at, Meeting.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def upcoming_for(session: AsyncSession, contact_id: int, now: datetime) -> Meeting | None:
    """The contact's next booked meeting that has not begun."""
    query = (
        select(Meeting)
        .where(
            Meeting.contact_id == contact_id,
            Meeting.status == "booked",
            Meeting.starts_at > now,
        )
        .order_by(Meeting.starts_at)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def of_owners(
    session: AsyncSession, owners: Sequence[str], *, since: datetime
) -> list[Meeting]:
    """Booked and cancelled meetings of any of `owners` (names in any case) that start
    after `since`, for a calendar feed."""
    names = [" ".join(owner.split()).lower() for owner in owners]
    query = (
        select(Meeting)
        .where(func.lower(Meeting.owner).in_(names), Meeting.starts_at >= since)
        .order_by(Meeting.starts_at, Meeting.id)
    )
    return list((await session.execute(query)).scalars())


async def reminders_due(
    session: AsyncSession, now: datetime, before: timedelta, *, limit: int = 500
) -> list[Meeting]:
    """Booked meetings starting within `before` from now whose current time (SEQUENCE) has
    had no reminder yet, and that were booked or moved before their reminder time: one set up
    closer to its start than that has just been confirmed."""
    query = (
        select(Meeting)
        .where(
            Meeting.status == "booked",
            Meeting.starts_at > now,
            Meeting.starts_at <= now + before,
            or_(
                Meeting.reminded_sequence.is_(None),
                Meeting.reminded_sequence < Meeting.sequence,
            ),
        )
        .order_by(Meeting.starts_at, Meeting.id)
        .limit(limit)
    )
    found = (await session.execute(query)).scalars()
    return [m for m in found if m.changed_at <= m.starts_at - before]


def mark_reminded(meeting: Meeting) -> None:
    meeting.reminded_sequence = meeting.sequence


def reminder_key(meeting: Meeting) -> str:
    """The outbox key of the reminder of the meeting's current time."""
    return f"meeting:{meeting.uid}:{meeting.sequence}:reminder"


async def _drop_reminder(session: AsyncSession, key: str) -> None:
    """A reminder of a time the meeting no longer has is not sent, if it is still waiting."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.idempotency_key == key, OutboxItem.status.in_(("pending", "held")))
        .values(status="cancelled", last_error="the meeting was moved or cancelled")
    )


async def move_meeting(
    session: AsyncSession, meeting: Meeting, starts_at: datetime, minutes: int
) -> bool:
    """Move a booked meeting (see `availability.move_slot`); a reminder of its old time
    that has not gone out is cancelled."""
    old_reminder = reminder_key(meeting)
    if not await availability.move_slot(session, meeting, starts_at, minutes):
        return False
    await _drop_reminder(session, old_reminder)
    return True


async def cancel_meeting(session: AsyncSession, meeting: Meeting) -> bool:
    """Cancel a booked meeting (see `availability.cancel_slot`), and its waiting reminder."""
    old_reminder = reminder_key(meeting)
    if not await availability.cancel_slot(session, meeting):
        return False
    await _drop_reminder(session, old_reminder)
    return True


async def organizer_of(session: AsyncSession, owner: str | None) -> tuple[str, str | None]:
    """(name, email or None) of the owner as organizer: the staff member as stored, or the
    owner's name as written when they are not a staff member (a team)."""
    member = await staff_members.find(session, owner) if owner else None
    if member is None:
        return owner or "", None
    return member.name, member.email


async def set_email(session: AsyncSession, name: str, email: str | None) -> StaffMember:
    """The address a staff member's invites are organized from (None: EMAIL_FROM)."""
    if email is not None and (email.count("@") != 1 or any(c.isspace() for c in email)):
        raise ConfigurationError(f"{email!r} is not an email address")
    member = await staff_members.get(session, name)
    member.email = email
    await session.flush()
    return member


async def calendar_token(session: AsyncSession, name: str, *, rotate: bool = False) -> str:
    """The staff member's feed token, made on first use; `rotate` replaces it (the old URL
    stops working at once)."""
    member = await staff_members.get(session, name)
    if member.calendar_token is None or rotate:
        member.calendar_token = secrets.token_urlsafe(TOKEN_BYTES)
        await session.flush()
    return member.calendar_token


async def member_by_token(session: AsyncSession, token: str) -> StaffMember | None:
    """Whose feed `token` opens; None for a token nobody has."""
    query = select(StaffMember).where(StaffMember.calendar_token == token)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


class ContactMeetings:
    """One contact's meetings, as an agent run may read and change them: bound to the run's
    contact and conversation like `ConversationScope`, so no other contact's meeting is
    within reach."""

    def __init__(self, session: AsyncSession, *, contact_id: int, conversation_id: int) -> None:
        self._session = session
        self.contact_id, self.conversation_id = contact_id, conversation_id

    def _own(self, meeting: Meeting) -> Meeting:
        if meeting.contact_id != self.contact_id:
            raise PermissionError(f"meeting {meeting.id} is not contact {self.contact_id}'s")
        return meeting

    async def upcoming(self, now: datetime) -> Meeting | None:
        return await upcoming_for(self._session, self.contact_id, now)

    async def book(self, deal: Deal | None, **fields: Any) -> Meeting | None:
        """Book a meeting with this contact; None when part of the time was just taken."""
        if deal is not None and deal.contact_id != self.contact_id:
            raise PermissionError(f"deal {deal.id} is not contact {self.contact_id}'s")
        return await availability.book_slot(
            self._session, deal, contact_id=self.contact_id, **fields
        )

    async def move(self, meeting: Meeting, starts_at: datetime, minutes: int) -> bool:
        """Move this contact's meeting; False when part of the new time is taken."""
        locked = await get_meeting(self._session, self._own(meeting).id, lock=True)
        return await move_meeting(self._session, locked, starts_at, minutes)

    async def organizer(self, owner: str | None) -> tuple[str, str | None]:
        return await organizer_of(self._session, owner)

    async def queue_notice(
        self,
        *,
        key: str,
        channel: str,
        recipient: str,
        text: str,
        meta: dict[str, Any],
        run_id: str | None,
    ) -> int:
        """Queue a calendar message (invite, update) to this contact; returns the item id."""
        item, _ = await outbox.enqueue(
            self._session,
            key=key,
            conversation_id=self.conversation_id,
            contact_id=self.contact_id,
            channel=channel,
            recipient=recipient,
            text=text,
            author=CALENDAR_AUTHOR,
            run_id=run_id,
            meta=meta,
        )
        return item.id


CALENDAR_AUTHOR = "calendar"
"""The outbox author of invites, updates and cancellations. Not one of the automatic authors
of the email reply cap: each is one change of one meeting the contact agreed to or a person
made, and an agent may move a meeting only a few times (`agents.tools.meetings`)."""
