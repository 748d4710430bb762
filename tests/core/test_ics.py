"""Invites and feeds are iCalendar that the icalendar library reads back as written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from icalendar import Calendar

from bot.core import ics

START = datetime(2030, 5, 6, 9, 0, tzinfo=timezone(timedelta(hours=2)))
SAM = ics.Party("Sam Lee", "sam@acme.test", "staff:Sam Lee")
ANN = ics.Party("Ann Lee", "ann@prospect.test", "contact:7")


def _event(**changes: object) -> ics.MeetingEvent:
    values: dict[str, object] = {
        "uid": "4f1c@crmbot",
        "sequence": 0,
        "starts_at": START,
        "ends_at": START + timedelta(minutes=30),
        "summary": "Intro call with Sam Lee",
        "organizer": SAM,
        "attendee": ANN,
    }
    return ics.MeetingEvent(**(values | changes))  # type: ignore[arg-type]


def _read(document: bytes) -> tuple[Calendar, Calendar]:
    calendar = Calendar.from_ical(document)
    [event] = calendar.walk("VEVENT")
    return calendar, event


def test_a_request_has_the_uid_sequence_utc_times_organizer_and_attendee() -> None:
    now = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    calendar, event = _read(ics.invite(_event(), "REQUEST", now=now))

    assert (str(calendar["method"]), str(calendar["version"])) == ("REQUEST", "2.0")
    assert str(event["uid"]) == "4f1c@crmbot" and int(event["sequence"]) == 0
    assert event.decoded("dtstart") == datetime(2030, 5, 6, 7, 0, tzinfo=UTC)
    assert event.decoded("dtend") == datetime(2030, 5, 6, 7, 30, tzinfo=UTC)
    assert event.decoded("dtstamp") == now
    assert str(event["status"]) == "CONFIRMED"
    assert str(event["organizer"]) == "mailto:sam@acme.test"
    assert event["organizer"].params["CN"] == "Sam Lee"
    assert str(event["attendee"]) == "mailto:ann@prospect.test"
    assert (event["attendee"].params["CN"], event["attendee"].params["RSVP"]) == ("Ann Lee", "TRUE")
    assert b"DTSTART:20300506T070000Z\r\n" in ics.invite(_event(), "REQUEST")


def test_a_cancellation_keeps_the_uid_with_the_next_sequence() -> None:
    calendar, event = _read(ics.invite(_event(sequence=2, cancelled=True), "CANCEL"))

    assert str(calendar["method"]) == "CANCEL"
    assert (str(event["uid"]), int(event["sequence"])) == ("4f1c@crmbot", 2)
    assert str(event["status"]) == "CANCELLED"
    assert ics.filename("CANCEL") == "cancellation.ics"


def test_an_organizer_without_an_address_writes_from_ours_and_asks_no_replies() -> None:
    team = ics.Party("", None, "staff:team")
    _, event = _read(
        ics.invite(_event(organizer=team), "REQUEST", fallback_organizer="bot@acme.test")
    )
    assert str(event["organizer"]) == "mailto:bot@acme.test"
    assert event["attendee"].params["RSVP"] == "FALSE"

    telegram_only = ics.Party("Ann", None, "contact:7")
    _, event = _read(ics.invite(_event(organizer=team, attendee=telegram_only), "REQUEST"))
    assert str(event["organizer"]) == "urn:x-crmbot:staff:team"
    assert str(event["attendee"]) == "urn:x-crmbot:contact:7"


def test_a_feed_publishes_every_event_and_marks_the_cancelled_ones() -> None:
    later = _event(uid="b@crmbot", starts_at=START + timedelta(days=1), cancelled=True, sequence=1)
    calendar = Calendar.from_ical(ics.feed([_event(), later], name="crmbot: Sam Lee"))

    assert str(calendar["method"]) == "PUBLISH"
    assert str(calendar["x-wr-calname"]) == "crmbot: Sam Lee"
    events = calendar.walk("VEVENT")
    assert [(str(e["uid"]), str(e["status"])) for e in events] == [
        ("4f1c@crmbot", "CONFIRMED"),
        ("b@crmbot", "CANCELLED"),
    ]


def test_the_outbox_meta_carries_the_event_and_method_and_reads_back() -> None:
    event = _event(description="Reply to move it.", changed_at=START)
    meta = {"kind": "meeting", ics.META_KEY: ics.invite_meta(event, "REQUEST")}

    assert ics.read_invite_meta(meta) == (event, "REQUEST")
    assert ics.read_invite_meta({"kind": "reply"}) is None
    with pytest.raises(ValueError, match="iTIP method"):
        ics.read_invite_meta({ics.META_KEY: {"method": "PUBLISH", "event": event.to_json()}})
    with pytest.raises(ValueError, match="unreadable invite"):
        ics.read_invite_meta({ics.META_KEY: {"method": "CANCEL", "event": {"uid": "x"}}})
