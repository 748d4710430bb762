"""Meeting slots: working hours cut into 30 minutes, minus what is booked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.hours import BusinessHours, free_slots, slot_state

HOURS = BusinessHours("mon-fri 09:00-11:00", "Europe/Berlin")
MONDAY_EARLY = datetime(2026, 5, 4, 5, 0, tzinfo=UTC)  # 07:00 in Berlin (CEST, UTC+2)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in Berlin in the week of Monday 4 May 2026, as UTC."""
    return datetime(2026, 5, day, hour - 2, minute, tzinfo=UTC)


def test_slots_are_the_working_hours_in_thirty_minutes_over_the_next_working_days() -> None:
    slots = free_slots(HOURS, now=MONDAY_EARLY, working_days=2, booked=[])

    assert slots == [
        _at(4, 9),
        _at(4, 9, 30),
        _at(4, 10),
        _at(4, 10, 30),
        _at(5, 9),
        _at(5, 9, 30),
        _at(5, 10),
        _at(5, 10, 30),
    ]


def test_weekends_are_skipped_and_past_slots_are_not_offered() -> None:
    friday_ten = _at(8, 10)

    slots = free_slots(HOURS, now=friday_ten, working_days=2, booked=[])

    assert slots == [_at(8, 10, 30), _at(11, 9), _at(11, 9, 30), _at(11, 10), _at(11, 10, 30)]


def test_a_booked_meeting_takes_every_slot_it_overlaps() -> None:
    booked = [(_at(4, 9, 15), _at(4, 10, 15))]

    slots = free_slots(HOURS, now=MONDAY_EARLY, working_days=1, booked=booked)

    assert slots == [_at(4, 10, 30)]


def test_a_time_is_free_taken_or_outside_the_hours() -> None:
    booked = [(_at(4, 9), _at(4, 9, 30))]
    half_hour, hour = timedelta(minutes=30), timedelta(minutes=60)

    def state(when: datetime, length: timedelta = half_hour) -> str:
        return slot_state(HOURS, when, length, now=MONDAY_EARLY, booked=booked)

    assert state(_at(4, 9, 30)) == "free"
    assert state(_at(4, 9)) == "taken"
    assert state(_at(4, 10), hour) == "free"
    assert state(_at(4, 10, 30), hour) == "outside"  # would run past closing
    assert state(_at(4, 9, 10)) == "outside"  # not on a slot boundary
    assert state(_at(9, 9)) == "outside"  # Saturday
    assert slot_state(HOURS, _at(4, 9, 30), half_hour, now=_at(4, 10), booked=[]) == "outside"
