"""The meeting reminder: once per meeting time, a day before, under the proactive rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.desk.meeting_notices import label
from bot.desk.meetings import reschedule
from bot.store.availability import book_slot
from bot.store.conversations import open_conversation
from bot.store.models import AuditEvent, Contact, Meeting, OutboxItem
from bot.store.types import utcnow
from tests.scheduler.conftest import Proactive, at

UTC_ZONE = ZoneInfo("UTC")


async def _meeting(proactive: Proactive, name: str, starts_at: datetime) -> Meeting:
    """`name` has an email conversation and a booked meeting with the team at `starts_at`."""
    contact_id = await proactive.lead(name, f"{name.lower()}@example.com")
    async with proactive.db.transaction() as session:
        await open_conversation(session, contact_id, "email")
        meeting = await book_slot(
            session, None, contact_id=contact_id, starts_at=starts_at, owner="team"
        )
    assert meeting is not None
    return meeting


def _reminders(proactive: Proactive) -> list[str]:
    return [text for _, text in proactive.email.delivered if text.startswith("Reminder:")]


async def test_a_reminder_goes_once_a_day_before_and_a_moved_meeting_gets_its_own(
    proactive: Proactive,
) -> None:
    meeting = await _meeting(proactive, "Ann", at(2, 10))

    await proactive.tick()  # two days ahead: not yet
    proactive.clock.set(at(1, 10, 1))
    await proactive.tick()
    await proactive.tick()
    await proactive.scheduler_for("another-worker").tick()  # a second scheduler at once
    await proactive.tick()

    when = label(at(2, 10), UTC_ZONE)
    assert _reminders(proactive) == [
        f"Reminder: your Meeting with our team is on {when} (30 minutes)."
    ]
    [sent] = await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True))
    assert sent.idempotency_key == f"meeting:{meeting.uid}:0:reminder"
    assert (sent.status, sent.recipient) == ("sent", "ann@example.com")

    async with proactive.db.transaction() as session:
        moved = await reschedule(
            session,
            proactive.harness.app.audit,
            meeting.id,
            at(4, 10),
            minutes=None,
            by="cli",
            team_zone=UTC_ZONE,
        )
    assert moved.done
    proactive.clock.set(at(3, 11))
    await proactive.tick()

    assert len(_reminders(proactive)) == 2
    keys = {i.idempotency_key for i in await proactive.rows(OutboxItem) if i.automatic}
    assert keys == {f"meeting:{meeting.uid}:0:reminder", f"meeting:{meeting.uid}:1:reminder"}


async def test_an_opted_out_contact_gets_no_reminder(proactive: Proactive) -> None:
    meeting = await _meeting(proactive, "Bob", at(1, 12))
    async with proactive.db.transaction() as session:
        contact = await session.get(Contact, meeting.contact_id)
        assert contact is not None
        contact.opted_out_at = utcnow()
    proactive.clock.set(at(0, 13))

    await proactive.tick()

    assert _reminders(proactive) == []
    [item] = await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True))
    assert item.status == "cancelled" and "opted out" in (item.last_error or "")
    [rule] = await proactive.rows(AuditEvent, AuditEvent.kind == "proactive_rule")
    assert rule.payload["action"] == "cancel"


async def test_a_reminder_waiting_for_the_morning_is_dropped_when_the_meeting_moves(
    proactive: Proactive,
) -> None:
    meeting = await _meeting(proactive, "Cy", at(1, 12))
    proactive.clock.set(at(0, 22))  # quiet hours: it waits for 08:00

    await proactive.tick()
    [waiting] = await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True))
    assert waiting.status == "pending"
    async with proactive.db.transaction() as session:
        await reschedule(
            session,
            proactive.harness.app.audit,
            meeting.id,
            at(3, 12),
            minutes=None,
            by="cli",
            team_zone=UTC_ZONE,
        )
    proactive.clock.set(at(1, 8, 5))
    await proactive.tick()

    assert _reminders(proactive) == []
    [dropped] = await proactive.rows(OutboxItem, OutboxItem.id == waiting.id)
    assert dropped.status == "cancelled"


async def test_no_reminder_for_a_meeting_booked_inside_its_reminder_window(
    proactive: Proactive,
) -> None:
    # Booked (by the real clock) less than a day before it starts: the confirmation suffices.
    await _meeting(proactive, "Dee", utcnow() + timedelta(hours=10))
    proactive.clock.set(utcnow())

    await proactive.tick()

    assert await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True)) == []
