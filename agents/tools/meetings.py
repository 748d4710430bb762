"""Meeting times from real availability: the owner's working hours minus what is booked.

The owner is the deal's owner, else the contact's, else the whole team (`team`). Their hours
are their own (`staff_members.hours`) when set, else BUSINESS_HOURS; slots are 30 minutes.
`find_meeting_times` offers free slots; `schedule_meeting` (in `deals`) books only one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from bot.core.errors import ConfigurationError
from bot.core.hours import SLOT, BusinessHours, free_slots, slot_state
from bot.store.models import Deal
from bot.store.types import utcnow

log = logging.getLogger("agents.tools")
TEAM_OWNER = "team"
"""The owner of a meeting with no deal owner or contact owner: the team's shared calendar."""
FALLBACK_HOURS = BusinessHours("mon-fri 09:00-18:00", "UTC")
"""For a run started without settings (the default of BUSINESS_HOURS)."""
WORKING_DAYS = 5
OFFERED = 6
JUST_TAKEN = (
    "Another conversation booked that time a moment ago. Call find_meeting_times and offer the "
    "contact another time."
)


async def meeting_owner(ctx: ToolContext, deal: Deal | None) -> str:
    """Whose calendar a meeting goes in: the deal's owner, the contact's, or the team."""
    if deal is not None and deal.owner:
        return deal.owner
    return (await ctx.scope.contact()).owner or TEAM_OWNER


async def owner_hours(ctx: ToolContext, owner: str) -> BusinessHours:
    """The owner's own working hours if set (in BUSINESS_TIMEZONE), else BUSINESS_HOURS."""
    team = ctx.run.hours or FALLBACK_HOURS
    spec = await ctx.scope.owner_hours(owner) if owner != TEAM_OWNER else None
    if not spec:
        return team
    try:
        return BusinessHours(spec, team.zone.key)
    except ConfigurationError as error:
        # A bad value must not stop bookings: the team's hours still apply, and it is logged.
        log.warning("staff member %s has unreadable hours %r: %s", owner, spec, error)
        return team


async def _booked(ctx: ToolContext, owner: str, since: datetime, days: int) -> list[Any]:
    return await ctx.scope.booked_spans(owner, since, since + timedelta(days=7 * days + 7))


def spread(slots: Sequence[datetime], limit: int, zone: ZoneInfo) -> list[datetime]:
    """Up to `limit` slots taken across days (each day's first, then each day's second...),
    so the contact gets a choice of days rather than one morning."""
    by_day: dict[date, list[datetime]] = {}
    for slot in slots:
        by_day.setdefault(slot.astimezone(zone).date(), []).append(slot)
    picked: list[datetime] = []
    for rank in range(max((len(day) for day in by_day.values()), default=0)):
        picked += [day[rank] for day in by_day.values() if rank < len(day)]
    return sorted(picked[:limit])


def label(when: datetime, zone: ZoneInfo) -> str:
    """How a slot is shown to the contact, e.g. 'Tue 5 May 09:30 CEST'."""
    local = when.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname() or ''}".rstrip()


def _zone_for(timezone: str | None, fallback: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(timezone) if timezone else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


async def offer_times(
    ctx: ToolContext, days: int = WORKING_DAYS, limit: int = OFFERED
) -> dict[str, Any]:
    """Free slots of the contact's meeting owner, shown in the contact's time zone."""
    owner = await meeting_owner(ctx, await ctx.scope.open_deal())
    hours = await owner_hours(ctx, owner)
    now = utcnow()
    booked = await _booked(ctx, owner, now, days)
    slots = free_slots(hours, now=now, working_days=days, booked=booked)
    zone = _zone_for((await ctx.scope.contact()).timezone, hours.zone)
    return {
        "owner": owner,
        "duration_minutes": int(SLOT.total_seconds() // 60),
        "times": [
            {"starts_at": slot.isoformat(), "label": label(slot, zone)}
            for slot in spread(slots, limit, hours.zone)
        ],
    }


async def check_slot(ctx: ToolContext, owner: str, starts_at: datetime, minutes: int) -> None:
    """Refuse a meeting that is not on free slots of the owner's working hours."""
    hours = await owner_hours(ctx, owner)
    now = utcnow()
    booked = await ctx.scope.booked_spans(owner, starts_at, starts_at + timedelta(minutes=minutes))
    state = slot_state(hours, starts_at, timedelta(minutes=minutes), now=now, booked=booked)
    if state == "taken":
        raise ToolRefused(
            "slot_taken",
            "That time is already booked. Call find_meeting_times and offer the contact one of "
            "the free times instead.",
        )
    if state == "outside":
        raise ToolRefused(
            "not_a_free_slot",
            f"starts_at is not a free 30-minute slot of {owner}'s working hours ({hours.spec}, "
            f"{hours.zone.key}). Offer only times that find_meeting_times returns.",
        )


class FindMeetingTimesArgs(ToolArgs):
    days: int = Field(WORKING_DAYS, ge=1, le=20, description="How many working days ahead")
    limit: int = Field(OFFERED, ge=1, le=20, description="How many times to offer at most")


@tool()
async def find_meeting_times(ctx: ToolContext, args: FindMeetingTimesArgs) -> ToolOutcome:
    """List free 30-minute meeting times of the contact's salesperson (or the team), from
    their working hours minus meetings already booked. Offer only these times."""
    offered = await offer_times(ctx, args.days, args.limit)
    offered["note"] = (
        "Offer only these times, by their label. Once the contact picks one, book it with "
        "schedule_meeting (starts_at as given here), quoting their words."
        if offered["times"]
        else "No free times in this period: try more days, or hand off to a person."
    )
    return ToolOutcome(offered)
