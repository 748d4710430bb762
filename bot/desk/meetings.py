"""Meeting changes staff make and the reminders the scheduler queues, with their messages.

`crmbot meetings reschedule|cancel` moves or cancels a meeting; the contact gets the update
(same UID, SEQUENCE + 1) or the cancellation on the channel of their latest conversation, the
owner a post in the staff group, and the change is audited. `queue_reminder` is the reminder
job's one step (`scheduler.reminders`). What each message says is `bot.desk.meeting_notices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.desk.meeting_notices import (
    STAFF_KIND,
    Announcement,
    Change,
    announcement,
    reminder_text,
    zone_of,
)
from bot.desk.staff import notify_staff, reach
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.contacts import get_contact
from bot.store.db import Tx
from bot.store.handoffs import latest_conversation
from bot.store.meetings import (
    CALENDAR_AUTHOR,
    cancel_meeting,
    get_meeting,
    mark_reminded,
    move_meeting,
    organizer_of,
    reminder_key,
)
from bot.store.models import Meeting
from bot.store.types import utcnow

REMINDER_AUTHOR = "system"
"""Reminders are automatic system mail: capped and marked Auto-Submitted like any."""


async def announce(
    session: Tx,
    announced: Announcement,
    meeting: Meeting,
    *,
    by: str,
    run_id: str | None = None,
) -> str:
    """Queue the contact's message in their latest conversation and the staff post; returns
    where the contact's message went, or why it could not go."""
    conversation = await latest_conversation(session, meeting.contact_id)
    await notify_staff(
        session,
        key=announced.staff_key,
        conversation_id=conversation.id if conversation else None,
        contact_id=meeting.contact_id,
        kind=STAFF_KIND,
        text=announced.staff_text,
        meta={"meeting_id": meeting.id, "by": by},
    )
    found = await reach(session, meeting.contact_id)
    if isinstance(found, str):
        return found
    conversation, address = found.conversation, found.address
    await outbox.enqueue(
        session,
        key=announced.contact_key,
        conversation_id=conversation.id,
        contact_id=meeting.contact_id,
        channel=conversation.channel,
        recipient=address,
        text=announced.contact_text,
        author=CALENDAR_AUTHOR,
        run_id=run_id,
        meta={**announced.contact_meta, "by": by},
    )
    return f"sent to the contact on {conversation.channel}"


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What a staff change of a meeting did."""

    meeting: Meeting
    done: bool
    """False: nothing changed (the new time is taken, or it was cancelled already)."""
    detail: str


async def reschedule(
    session: Tx,
    audit: AuditLog,
    meeting_id: int,
    starts_at: datetime,
    *,
    minutes: int | None,
    by: str,
    team_zone: ZoneInfo,
) -> ChangeResult:
    """Move a booked meeting (a person's decision: the owner's hours are not enforced, other
    meetings are); the contact gets the update (same UID, SEQUENCE + 1)."""
    meeting = await get_meeting(session, meeting_id, lock=True)
    if meeting.status != "booked":
        return ChangeResult(meeting, False, f"meeting {meeting_id} is {meeting.status}")
    if starts_at <= utcnow():
        return ChangeResult(meeting, False, "the new time is in the past")
    before = meeting.starts_at
    if not await move_meeting(session, meeting, starts_at, minutes or meeting.duration_minutes):
        return ChangeResult(meeting, False, "the owner has another meeting at that time")
    detail = await _tell(session, audit, "moved", meeting, by=by, team_zone=team_zone, was=before)
    return ChangeResult(meeting, True, detail)


async def cancel(
    session: Tx, audit: AuditLog, meeting_id: int, *, by: str, team_zone: ZoneInfo
) -> ChangeResult:
    """Cancel a booked meeting and free its time; the contact gets METHOD:CANCEL."""
    meeting = await get_meeting(session, meeting_id, lock=True)
    if not await cancel_meeting(session, meeting):
        return ChangeResult(meeting, False, f"meeting {meeting_id} is {meeting.status}")
    detail = await _tell(session, audit, "cancelled", meeting, by=by, team_zone=team_zone)
    return ChangeResult(meeting, True, detail)


async def _tell(
    session: Tx,
    audit: AuditLog,
    change: Change,
    meeting: Meeting,
    *,
    by: str,
    team_zone: ZoneInfo,
    was: datetime | None = None,
) -> str:
    contact = await get_contact(session, meeting.contact_id)
    organizer = await organizer_of(session, meeting.owner)
    zone = zone_of(contact, team_zone)
    announced = announcement(
        change, meeting, contact, organizer, zone=zone, team_zone=team_zone, moved_from=was
    )
    detail = await announce(session, announced, meeting, by=by)
    conversation = await latest_conversation(session, meeting.contact_id)
    await audit.append(
        session,
        f"meeting_{change}",
        {
            "meeting_id": meeting.id,
            "uid": meeting.uid,
            "sequence": meeting.sequence,
            "starts_at": meeting.starts_at.isoformat(),
            "was": was.isoformat() if was else None,
            "contact": detail,
        },
        actor=by,
        conversation_id=conversation.id if conversation else None,
    )
    return detail


async def queue_reminder(
    session: Tx, meeting: Meeting, *, team_zone: ZoneInfo, actor: str
) -> str | None:
    """Queue the contact's reminder of `meeting` as an automatic message (the proactive
    rules decide at send time whether and when it goes); returns why it could not be queued,
    or None. Either way the meeting's current SEQUENCE counts as reminded."""
    mark_reminded(meeting)
    contact = await get_contact(session, meeting.contact_id)
    found = await reach(session, contact.id)
    if isinstance(found, str):
        return found
    conversation, address = found.conversation, found.address
    name, _ = await organizer_of(session, meeting.owner)
    text = reminder_text(meeting, name, zone_of(contact, team_zone))
    await outbox.enqueue(
        session,
        key=reminder_key(meeting),
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel=conversation.channel,
        recipient=address,
        text=text,
        author=REMINDER_AUTHOR,
        meta={"kind": "meeting_reminder", "meeting_id": meeting.id, "by": actor},
        automatic=True,
    )
    return None
