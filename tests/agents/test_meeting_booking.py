"""schedule_meeting reaches a calendar: the contact's invite and the owner's staff post go
through the outbox, and booking again moves the contact's meeting instead of adding one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import update

from agents.messages import ModelRequest, ModelTurn, ToolResult
from agents.tools.meetings import MAX_AGENT_MOVES
from bot.core import ics
from bot.core.hours import free_slots
from bot.desk.meeting_notices import label
from bot.store.models import Contact, Meeting, MeetingSlot, OutboxItem
from bot.store.types import utcnow
from tests.support.harness import Harness
from tests.support.models import FunctionModel, call, turn


def said_at(when: datetime) -> str:
    """The contact agreeing to `when` by naming it, as a booking needs."""
    return f"{when:%A} at {when:%H:%M} works for me"


def _booker(when: datetime) -> FunctionModel:
    """Book `when` quoting the contact, then finish."""

    def decide(request: ModelRequest) -> ModelTurn:
        if isinstance(request.messages[-1], ToolResult):
            return turn("", call("finish"))
        arguments = {"starts_at": when.isoformat(), "contact_quote": said_at(when)}
        return turn("", call("schedule_meeting", arguments))

    return FunctionModel(decide)


def _slots(h: Harness) -> list[datetime]:
    return free_slots(h.app.runner.hours, now=utcnow(), working_days=3, booked=[])


async def _book(h: Harness, when: datetime) -> dict[str, Any]:
    model = _booker(when)
    h.use_model(model)
    await h.answer(said_at(when))
    result = next(m for m in model.requests[-1].messages if isinstance(m, ToolResult))
    loaded: dict[str, Any] = json.loads(result.content)
    return loaded


async def _items(h: Harness, channel: str) -> list[OutboxItem]:
    return sorted(await h.rows(OutboxItem, OutboxItem.channel == channel), key=lambda i: i.id)


async def test_a_booking_sends_the_contact_an_invite_and_posts_it_for_staff(
    harness: Harness,
) -> None:
    h = harness
    await h.receive("hello")
    async with h.db.transaction() as session:
        await session.execute(update(Contact).values(timezone="America/New_York"))
    when = _slots(h)[1]

    result = await _book(h, when)

    [meeting] = await h.rows(Meeting)
    assert result["meeting_id"] == meeting.id and "invite" in result["note"]
    [invite] = [i for i in await _items(h, "console") if i.author == "calendar"]
    shown = label(when, ZoneInfo("America/New_York"))
    assert invite.text.startswith(f"Your Intro call with our team is booked for {shown}")
    assert invite.idempotency_key == f"meeting:{meeting.uid}:0:contact"
    event, method = ics.read_invite_meta(invite.meta) or (None, None)
    assert method == "REQUEST" and event is not None
    assert (event.uid, event.sequence, event.starts_at) == (meeting.uid, 0, when)
    [vevent] = Calendar.from_ical(ics.invite(event, "REQUEST")).walk("VEVENT")
    assert vevent.decoded("dtstart") == when
    [post] = [i for i in await _items(h, "staff") if i.meta.get("kind") == "meeting"]
    assert post.text.startswith("📅 Meeting booked: Ann with the team")
    assert post.idempotency_key == f"meeting:{meeting.uid}:0:staff"
    assert ("Ann", invite.text) in h.channel.delivered


async def test_booking_again_moves_the_meeting_with_the_same_uid_and_the_next_sequence(
    harness: Harness,
) -> None:
    h = harness
    first, second = _slots(h)[0], _slots(h)[3]
    await _book(h, first)
    [booked] = await h.rows(Meeting)

    result = await _book(h, second)
    again = await _book(h, second)

    [moved] = await h.rows(Meeting)
    assert moved.id == booked.id and moved.uid == booked.uid
    assert (moved.starts_at, moved.sequence, moved.status) == (second, 1, "booked")
    assert result["rescheduled_from"] == first.isoformat()
    assert again["unchanged"] is True
    invites = [i for i in await _items(h, "console") if i.author == "calendar"]
    assert [i.idempotency_key for i in invites] == [
        f"meeting:{booked.uid}:0:contact",
        f"meeting:{booked.uid}:1:contact",
    ]
    event, method = ics.read_invite_meta(invites[1].meta) or (None, None)
    assert event is not None and (method, event.uid, event.sequence) == ("REQUEST", booked.uid, 1)
    assert invites[1].text.startswith("Your Intro call with our team has moved to")
    slots = await h.rows(MeetingSlot)
    assert sorted(s.slot_start for s in slots) == [second, second + timedelta(minutes=15)]
    [*_, post] = [i for i in await _items(h, "staff") if i.meta.get("kind") == "meeting"]
    assert post.text.startswith("📅 Meeting moved") and f"it was {label(first, UTC)}" in post.text


async def test_an_agent_stops_moving_a_meeting_after_a_few_times(harness: Harness) -> None:
    h = harness
    slots = _slots(h)
    await _book(h, slots[0])
    async with h.db.transaction() as session:
        await session.execute(update(Meeting).values(sequence=MAX_AGENT_MOVES))

    result = await _book(h, slots[2])

    assert result["error"]["type"] == "too_many_moves"
    [meeting] = await h.rows(Meeting)
    assert meeting.starts_at == slots[0]
