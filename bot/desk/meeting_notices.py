"""What a meeting change says, and to whom: the contact's text and invite, the staff post.

Pure: no store access. The booking tool (`agents.tools.meetings`) and the staff commands
(`bot.desk.meetings`) build their messages here, so the contact reads the same words whoever
moved the meeting. Keys are made of the meeting's UID and SEQUENCE (`meeting:UID:SEQ:contact`,
`...:staff`), so a replayed booking, a command run twice or two schedulers at once send
nothing twice. The contact's message carries the meeting as JSON (`bot.core.ics.invite_meta`);
the channel that sends it attaches the iCalendar document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import ics
from bot.core.safe_text import visible_line
from bot.store.models import Contact, Meeting

TEAM_OWNER = "team"
"""The owner of a meeting with no deal owner or contact owner: the team's shared calendar."""
STAFF_KIND = "meeting"
"""The `kind` of the staff posts about meetings."""
Change = Literal["booked", "moved", "cancelled"]


def zone_of(contact: Contact, team_zone: ZoneInfo) -> ZoneInfo:
    """The contact's own time zone, else the team's."""
    try:
        return ZoneInfo(contact.timezone) if contact.timezone else team_zone
    except (ZoneInfoNotFoundError, ValueError, OSError):  # 'America' is a directory
        return team_zone


def label(when: datetime, zone: tzinfo) -> str:
    """How a time is shown to people, e.g. 'Tue 5 May 09:30 CEST'."""
    local = when.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname() or ''}".rstrip()


def ends_at(meeting: Meeting) -> datetime:
    return meeting.starts_at + timedelta(minutes=meeting.duration_minutes)


def with_whom(owner: str | None, organizer_name: str) -> str:
    return "our team" if not owner or owner == TEAM_OWNER else organizer_name


def topic_of(meeting: Meeting) -> str:
    return visible_line(meeting.topic or "Meeting")


def event_of(
    meeting: Meeting, contact: Contact, organizer: tuple[str, str | None], *, for_staff: bool
) -> ics.MeetingEvent:
    """The meeting as calendars see it: the contact's invite names the owner, a staff feed
    names the contact."""
    name, email = organizer
    team = not meeting.owner or meeting.owner == TEAM_OWNER
    summary = (
        f"{topic_of(meeting)}: {visible_line(contact.name or f'contact {contact.id}')}"
        if for_staff
        else f"{topic_of(meeting)} with {with_whom(meeting.owner, name)}"
    )
    return ics.MeetingEvent(
        uid=meeting.uid,
        sequence=meeting.sequence,
        starts_at=meeting.starts_at,
        ends_at=ends_at(meeting),
        summary=summary,
        organizer=ics.Party("" if team else name, email, f"staff:{meeting.owner or TEAM_OWNER}"),
        attendee=ics.Party(contact.name or "", contact.email, f"contact:{contact.id}"),
        cancelled=meeting.status == "cancelled",
        description=_contact_card(contact) if for_staff else "",
        changed_at=meeting.changed_at,
    )


def _contact_card(contact: Contact) -> str:
    lines = [f"Contact: {contact.name or contact.id} (crmbot contact {contact.id})"]
    lines += [f"Email: {contact.email}"] if contact.email else []
    if contact.telegram_username:
        lines.append(f"Telegram: @{contact.telegram_username}")
    lines += [f"Phone: {contact.phone}"] if contact.phone else []
    return "\n".join(visible_line(line) for line in lines)


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a meeting change tells the contact and the staff group, and under which keys."""

    key: str
    contact_text: str
    contact_meta: dict[str, Any]
    staff_text: str

    @property
    def contact_key(self) -> str:
        return f"{self.key}:contact"

    @property
    def staff_key(self) -> str:
        return f"{self.key}:staff"


def announcement(
    change: Change,
    meeting: Meeting,
    contact: Contact,
    organizer: tuple[str, str | None],
    *,
    zone: ZoneInfo,
    team_zone: ZoneInfo,
    moved_from: datetime | None = None,
) -> Announcement:
    """The messages for `change` of `meeting` (as it is now), times in the contact's `zone`
    for them and in `team_zone` for staff."""
    who = with_whom(meeting.owner, organizer[0])
    when = f"{label(meeting.starts_at, zone)} ({meeting.duration_minutes} minutes)"
    topic = topic_of(meeting)
    contact_text = {
        "booked": f"Your {topic} with {who} is booked for {when}. The calendar invite is attached.",
        "moved": f"Your {topic} with {who} has moved to {when}. The updated invite is attached.",
        "cancelled": f"Your {topic} with {who} on {label(meeting.starts_at, zone)} is "
        "cancelled. The cancellation is attached for your calendar.",
    }[change]
    event = event_of(meeting, contact, organizer, for_staff=False)
    method: ics.Method = "CANCEL" if change == "cancelled" else "REQUEST"
    meta = {
        "kind": STAFF_KIND,
        "meeting_id": meeting.id,
        ics.META_KEY: ics.invite_meta(event, method),
    }
    return Announcement(
        key=f"meeting:{meeting.uid}:{meeting.sequence}",
        contact_text=contact_text,
        contact_meta=meta,
        staff_text=_staff_text(change, meeting, contact, organizer[0], team_zone, moved_from),
    )


def _staff_text(
    change: Change,
    meeting: Meeting,
    contact: Contact,
    organizer_name: str,
    zone: ZoneInfo,
    moved_from: datetime | None,
) -> str:
    owner = organizer_name if meeting.owner and meeting.owner != TEAM_OWNER else "the team"
    person = visible_line(contact.name or f"contact {contact.id}")
    when = f"{label(meeting.starts_at, zone)}, {meeting.duration_minutes} min"
    text = f"📅 Meeting {change}: {person} with {visible_line(owner)}, {when} ({topic_of(meeting)})"
    if change == "moved" and moved_from is not None:
        text += f"; it was {label(moved_from, zone)}"
    return f"{text}. Meeting #{meeting.id}: crmbot meetings reschedule|cancel {meeting.id}"


def reminder_text(meeting: Meeting, organizer_name: str, zone: ZoneInfo) -> str:
    """The contact's reminder of `meeting`, its time in their `zone`."""
    return (
        f"Reminder: your {topic_of(meeting)} with {with_whom(meeting.owner, organizer_name)} is "
        f"on {label(meeting.starts_at, zone)} ({meeting.duration_minutes} minutes)."
    )
