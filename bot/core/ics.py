"""iCalendar documents for meetings, built with the `icalendar` library.

Two kinds: an invitation in the iTIP sense (RFC 5546), `METHOD:REQUEST` for a new or moved
meeting and `METHOD:CANCEL` for a cancelled one, sent to the contact; and a feed
(`METHOD:PUBLISH`) that a staff member's calendar application subscribes to. Every meeting
keeps one UID for life; its SEQUENCE grows with every move and with the cancellation, which
is how calendar applications know an update replaces what they have.

All times are written in UTC (`DTSTART:20300506T090000Z`), so no VTIMEZONE is needed and no
client can read them in the wrong zone. An outbox item carries the meeting as plain JSON
(`MeetingEvent.to_json`, under the meta key `invite`); the channel renders the document when
it sends, so the organizer's address can fall back to the channel's own (EMAIL_FROM).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import quote

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//crmbot//meetings//EN"
META_KEY = "invite"
"""The outbox meta key of a meeting invite (`{"method": ..., "event": {...}}`)."""
Method = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True, slots=True)
class Party:
    """The organizer or the attendee of a meeting."""

    name: str
    email: str | None = None
    key: str = ""
    """A stable name for someone without an email address (`contact:7`), made into a URN."""

    def address(self, fallback_email: str | None = None) -> str:
        email = self.email or fallback_email
        if email:
            return f"mailto:{email}"
        return f"urn:x-crmbot:{quote(self.key or self.name or 'unknown', safe=':')}"


@dataclass(frozen=True, slots=True)
class MeetingEvent:
    """One meeting as calendars see it."""

    uid: str
    sequence: int
    starts_at: datetime
    ends_at: datetime
    summary: str
    organizer: Party
    attendee: Party
    cancelled: bool = False
    description: str = ""
    changed_at: datetime | None = None
    """When its time or status last changed (LAST-MODIFIED)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "sequence": self.sequence,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "summary": self.summary,
            "organizer": _party_json(self.organizer),
            "attendee": _party_json(self.attendee),
            "cancelled": self.cancelled,
            "description": self.description,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeetingEvent:
        changed = data.get("changed_at")
        return cls(
            uid=str(data["uid"]),
            sequence=int(data["sequence"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            summary=str(data.get("summary", "")),
            organizer=Party(**data["organizer"]),
            attendee=Party(**data["attendee"]),
            cancelled=bool(data.get("cancelled", False)),
            description=str(data.get("description", "")),
            changed_at=datetime.fromisoformat(changed) if changed else None,
        )


def _party_json(party: Party) -> dict[str, Any]:
    return {"name": party.name, "email": party.email, "key": party.key}


def invite_meta(event: MeetingEvent, method: Method) -> dict[str, Any]:
    """What an outbox item carries (under `META_KEY`) for a channel to send the invite."""
    return {"method": method, "event": event.to_json()}


def read_invite_meta(meta: dict[str, Any] | None) -> tuple[MeetingEvent, Method] | None:
    """The invite an outbox item's meta carries, or None; ValueError when it is malformed."""
    found = (meta or {}).get(META_KEY)
    if found is None:
        return None
    if not isinstance(found, dict):
        raise ValueError(f"an invite is an object, not {type(found).__name__}")
    method = found.get("method")
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"not an iTIP method for an invite: {method!r}")
    try:
        return MeetingEvent.from_json(found["event"]), cast(Method, method)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable invite: {type(error).__name__}: {error}") from None


def invite(
    event: MeetingEvent,
    method: Method,
    *,
    fallback_organizer: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The invitation (REQUEST) or cancellation (CANCEL) of one meeting, for its attendee.

    An organizer without an email address of their own is given `fallback_organizer` (the
    address the mail comes from); replies are then not asked for (RSVP=FALSE), so the
    contact's calendar does not write "Accepted: ..." to the bot.
    """
    calendar = _calendar(method)
    rsvp = bool(event.organizer.email) and method == "REQUEST"
    calendar.add_component(_vevent(event, now or datetime.now(UTC), fallback_organizer, rsvp))
    return cast(bytes, calendar.to_ical())


def feed(events: Iterable[MeetingEvent], *, name: str, now: datetime | None = None) -> bytes:
    """A subscribable calendar of `events` (cancelled ones marked STATUS:CANCELLED)."""
    calendar = _calendar("PUBLISH")
    calendar.add("x-wr-calname", name)
    calendar.add("x-published-ttl", "PT15M")  # how often clients should fetch it again
    stamp = now or datetime.now(UTC)
    for event in events:
        calendar.add_component(_vevent(event, stamp, None, False))
    return cast(bytes, calendar.to_ical())


def filename(method: Method) -> str:
    return "invite.ics" if method == "REQUEST" else "cancellation.ics"


def _calendar(method: str) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    return calendar


def _vevent(event: MeetingEvent, now: datetime, fallback: str | None, rsvp: bool) -> Event:
    vevent = Event()
    vevent.add("uid", event.uid)
    vevent.add("sequence", event.sequence)
    vevent.add("dtstamp", now.astimezone(UTC))
    vevent.add("dtstart", event.starts_at.astimezone(UTC))
    vevent.add("dtend", event.ends_at.astimezone(UTC))
    if event.changed_at is not None:
        vevent.add("last-modified", event.changed_at.astimezone(UTC))
    vevent.add("summary", event.summary)
    if event.description:
        vevent.add("description", event.description)
    vevent.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    vevent.add("organizer", _address(event.organizer, fallback))
    attendee = _address(event.attendee, None)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = vText("NEEDS-ACTION")
    attendee.params["rsvp"] = vText("TRUE" if rsvp else "FALSE")
    vevent.add("attendee", attendee)
    return vevent


def _address(party: Party, fallback_email: str | None) -> vCalAddress:
    address = vCalAddress(party.address(fallback_email))
    if party.name:
        address.params["cn"] = vText(party.name)
    return address
