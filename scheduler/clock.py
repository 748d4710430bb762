"""Schedule arithmetic: when a trigger fires next, and which slot a late start still owes.

APScheduler's triggers do the calendar work (cron fields, intervals, time zones and their
daylight-saving gaps); the slots themselves are kept in our tables.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agents.definition import ScheduleTrigger, parse_duration

EPOCH = datetime(2000, 1, 1)
"""Intervals are aligned on this local midnight, so `every: 6h` fires at 00, 06, 12 and 18."""
MAX_SLOTS_SCANNED = 100_000
TINY = timedelta(microseconds=1)


DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Crontab's weekday numbers: 0 (and 7) is Sunday. APScheduler 3 counts from Monday = 0, so
a crontab's `1-5` would mean Tuesday to Saturday there; we hand it day names instead."""


def _weekday_number(token: str) -> int:
    token = token.strip().lower()
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    number = int(token)
    if not 0 <= number <= 7:
        raise ValueError(f"weekday {token} is not 0-7")
    return number % 7


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field (`1-5`, `0,6`, `*/2`, `mon-fri`) as APScheduler day names."""
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _weekday_number(low), _weekday_number(high)
            if high.strip() == "7":
                last = 7
        else:
            first = last = _weekday_number(span)
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def aps_trigger(trigger: ScheduleTrigger) -> BaseTrigger:
    zone = ZoneInfo(trigger.timezone)
    if trigger.cron is not None:
        minute, hour, day, month, weekday = trigger.cron.split()
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=None if weekday == "*" else crontab_weekdays(weekday),
            timezone=zone,
        )
    assert trigger.every is not None
    every = parse_duration(trigger.every)
    return IntervalTrigger(seconds=every.total_seconds(), start_date=EPOCH.replace(tzinfo=zone))


def next_after(trigger: ScheduleTrigger, after: datetime) -> datetime | None:
    """The first slot strictly after `after`."""
    found: datetime | None = aps_trigger(trigger).get_next_fire_time(None, after + TINY)
    return found


def latest_slot(trigger: ScheduleTrigger, first_due: datetime, now: datetime) -> datetime:
    """The newest slot at or before `now`, from `first_due` on: a bot that was down for three
    nights owes only the last night's slot, not three."""
    slot = first_due
    for _ in range(MAX_SLOTS_SCANNED):
        following = next_after(trigger, slot)
        if following is None or following > now:
            return slot
        slot = following
    return slot


def slots_between(trigger: ScheduleTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in (start, end], for previews."""
    found: list[datetime] = []
    slot = next_after(trigger, start)
    while slot is not None and slot <= end and len(found) < 1000:
        found.append(slot)
        slot = next_after(trigger, slot)
    return found


def trigger_hash(trigger: ScheduleTrigger) -> str:
    data = json.dumps(trigger.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()
