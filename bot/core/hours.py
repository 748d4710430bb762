"""Business hours: when people answer handed-off conversations.

Written like `mon-fri 09:00-18:00; sat 10:00-14:00` in the configured time zone. Used to tell a
customer, outside those hours, when a person will pick their conversation up, and to cut the
working hours into meeting slots (`free_slots`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.core.errors import ConfigurationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Window:
    weekday: int
    opens: time
    closes: time


class BusinessHours:
    """Opening windows per weekday in one time zone."""

    def __init__(self, spec: str, timezone: str) -> None:
        self.spec, self.zone = spec, ZoneInfo(timezone)
        self.windows = [w for part in spec.split(";") if part.strip() for w in _parse(part)]
        if not self.windows:
            raise ConfigurationError(f"BUSINESS_HOURS {spec!r} has no opening hours")

    def is_open(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        return any(
            w.weekday == local.weekday() and w.opens <= local.time() < w.closes
            for w in self.windows
        )

    def next_opening(self, when: datetime) -> datetime:
        """The next moment the business opens (or `when` itself if it is open)."""
        if self.is_open(when):
            return when
        local = when.astimezone(self.zone)
        for days_ahead in range(8):
            day = (local + timedelta(days=days_ahead)).date()
            for w in sorted(self.windows, key=lambda w: w.opens):
                opening = datetime.combine(day, w.opens, self.zone)
                if w.weekday == day.weekday() and opening > local:
                    return opening
        raise AssertionError("a week always contains an opening")

    def describe_next_opening(self, when: datetime) -> str:
        """E.g. 'today at 09:00 CET', 'tomorrow at 09:00 CET', 'Monday at 09:00 CET'."""
        opening = self.next_opening(when)
        days = (opening.date() - when.astimezone(self.zone).date()).days
        day = {0: "today", 1: "tomorrow"}.get(days, opening.strftime("%A"))
        return f"{day} at {opening:%H:%M} {opening.tzname() or ''}".rstrip()


def _parse(part: str) -> list[Window]:
    found = _SPAN.match(part.lower())
    if not found:
        raise ConfigurationError(
            f"BUSINESS_HOURS: cannot read {part.strip()!r}; write e.g. 'mon-fri 09:00-18:00'"
        )
    first, last, h1, m1, h2, m2 = found.groups()
    if first not in DAYS or (last or first) not in DAYS:
        raise ConfigurationError(f"BUSINESS_HOURS: unknown day in {part.strip()!r}")
    opens, closes = time(int(h1), int(m1)), time(int(h2) % 24, int(m2))
    if closes <= opens and closes != time(0, 0):
        raise ConfigurationError(f"BUSINESS_HOURS: {part.strip()!r} closes before it opens")
    closes = time(23, 59, 59) if closes == time(0, 0) else closes
    start, end = DAYS.index(first), DAYS.index(last or first)
    days = range(start, end + 1) if end >= start else [*range(start, 7), *range(0, end + 1)]
    return [Window(day, opens, closes) for day in days]


SLOT = timedelta(minutes=30)
"""The length of a meeting slot."""
Span = tuple[datetime, datetime]
"""A booked meeting: its start and end (aware datetimes)."""


def day_slots(hours: BusinessHours, day: date, length: timedelta = SLOT) -> list[datetime]:
    """Every slot start (UTC) of `day` in the hours' zone: each opening window cut into
    `length` pieces from its opening, the last ending by its closing."""
    starts: list[datetime] = []
    for window in sorted(hours.windows, key=lambda w: w.opens):
        if window.weekday != day.weekday():
            continue
        start = datetime.combine(day, window.opens, hours.zone).astimezone(UTC)
        end = datetime.combine(day, window.closes, hours.zone).astimezone(UTC)
        while start + length <= end:
            starts.append(start)
            start += length
    return starts


def _overlaps(start: datetime, length: timedelta, booked: Iterable[Span]) -> bool:
    return any(b_start < start + length and start < b_end for b_start, b_end in booked)


def free_slots(
    hours: BusinessHours,
    *,
    now: datetime,
    working_days: int,
    booked: Iterable[Span],
    length: timedelta = SLOT,
) -> list[datetime]:
    """Free slot starts (UTC, in order) after `now` over the next `working_days` days that
    have opening hours, today included, leaving out every slot a booked meeting overlaps."""
    spans = list(booked)
    today = now.astimezone(hours.zone).date()
    found: list[datetime] = []
    days_seen = 0
    for offset in range(7 * working_days + 7):  # a week always holds a working day
        if days_seen >= working_days:
            break
        starts = day_slots(hours, today + timedelta(days=offset), length)
        if not starts:
            continue
        days_seen += 1
        found += [s for s in starts if s > now and not _overlaps(s, length, spans)]
    return found


def slot_state(
    hours: BusinessHours,
    starts_at: datetime,
    duration: timedelta,
    *,
    now: datetime,
    booked: Iterable[Span],
    length: timedelta = SLOT,
) -> str:
    """`free` when a meeting of `duration` from `starts_at` covers only free slots of the
    hours; `taken` when they are slots but a booked meeting overlaps one; else `outside`
    (not on a slot boundary, outside the hours, or already begun)."""
    if starts_at <= now:
        return "outside"
    day = starts_at.astimezone(hours.zone).date()
    slots = set(day_slots(hours, day, length))
    pieces = max(1, -(-duration // length))  # a 45-minute meeting takes two slots
    covered = [starts_at.astimezone(UTC) + n * length for n in range(pieces)]
    if not all(piece in slots for piece in covered):
        return "outside"
    spans = list(booked)
    return "taken" if any(_overlaps(piece, length, spans) for piece in covered) else "free"


_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily local-time span in which no automatic message goes out, e.g. 21:00-08:00.

    The span may cross midnight; `none` (or an empty spec) means no quiet hours.
    """

    starts: time | None
    ends: time | None

    @classmethod
    def parse(cls, spec: str) -> QuietHours:
        if spec.strip().lower() in ("", "none", "off"):
            return cls(None, None)
        found = _QUIET.match(spec)
        if found is None:
            raise ConfigurationError(f"QUIET_HOURS {spec!r} is not like 21:00-08:00")
        h1, m1, h2, m2 = (int(part) for part in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ConfigurationError(f"QUIET_HOURS {spec!r} has an impossible time")
        return cls(time(h1, m1), time(h2, m2))

    def _contains(self, local: time) -> bool:
        if self.starts is None or self.ends is None or self.starts == self.ends:
            return False
        if self.starts < self.ends:
            return self.starts <= local < self.ends
        return local >= self.starts or local < self.ends

    def wait_until(self, when: datetime, zone: ZoneInfo) -> datetime | None:
        """When the quiet span that holds `when` ends (in `zone`), or None if `when` is not
        quiet: a message due then waits for the morning instead of being dropped."""
        local = when.astimezone(zone)
        if self.ends is None or not self._contains(local.time().replace(tzinfo=None)):
            return None
        day = local.date() if local.time() < self.ends else local.date() + timedelta(days=1)
        return datetime.combine(day, self.ends, zone)
