"""Meetings: times from real availability, and the booking that reaches a calendar.

The owner is the deal's owner, else the contact's, else the whole team (`team`). Their hours
are their own (`staff_members.hours`) when set, else BUSINESS_HOURS; slots are 30 minutes.
`find_meeting_times` offers free slots; `schedule_meeting` books only one of them, and two
conversations cannot book overlapping times: the store's slot rows decide the race.

A booking sends the contact a confirmation with the calendar invite (same channel, through
the outbox) and posts it for the owner in the staff group. `schedule_meeting` for a contact
who has an upcoming meeting moves it (same UID, SEQUENCE + 1, an updated invite) instead of
booking a second, and its owner stays.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from bot.core.errors import ConfigurationError
from bot.core.hours import SLOT, BusinessHours, free_slots, slot_state
from bot.desk.meeting_notices import (
    STAFF_KIND,
    TEAM_OWNER,
    Change,
    announcement,
    ends_at,
    label,
    zone_of,
)
from bot.store.models import Deal, Meeting
from bot.store.types import utcnow

log = logging.getLogger("agents.tools")
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


async def offer_times(
    ctx: ToolContext, days: int = WORKING_DAYS, limit: int = OFFERED
) -> dict[str, Any]:
    """Free slots of the contact's meeting owner, shown in the contact's time zone."""
    owner = await meeting_owner(ctx, await ctx.scope.open_deal())
    hours = await owner_hours(ctx, owner)
    now = utcnow()
    booked = await _booked(ctx, owner, now, days)
    slots = free_slots(hours, now=now, working_days=days, booked=booked)
    zone = zone_of(await ctx.scope.contact(), hours.zone)
    return {
        "owner": owner,
        "duration_minutes": int(SLOT.total_seconds() // 60),
        "times": [
            {"starts_at": slot.isoformat(), "label": label(slot, zone)}
            for slot in spread(slots, limit, hours.zone)
        ],
    }


async def check_slot(
    ctx: ToolContext,
    owner: str,
    starts_at: datetime,
    minutes: int,
    *,
    moving: Meeting | None = None,
) -> None:
    """Refuse a meeting that is not on free slots of the owner's working hours (the time of
    the meeting being `moving` counts as free)."""
    hours = await owner_hours(ctx, owner)
    now = utcnow()
    booked = await ctx.scope.booked_spans(owner, starts_at, starts_at + timedelta(minutes=minutes))
    if moving is not None:
        own = (moving.starts_at, ends_at(moving))
        booked = [span for span in booked if span != own]
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


MAX_DAYS_AHEAD = 90
MAX_AGENT_MOVES = 5
"""An agent moves one meeting at most this many times; after that a person does (a contact
who keeps moving it needs one, and every move sends the contact an email)."""
BOOKED_NOTE = (
    "The contact has been sent a confirmation with the calendar invite. Tell them briefly that "
    "it is booked; do not repeat the whole invite."
)
MOVED_NOTE = (
    "Their meeting was moved, not booked twice, and they have been sent the updated invite. "
    "Tell them briefly; do not repeat the whole invite."
)


class ScheduleMeetingArgs(ToolArgs):
    starts_at: AwareDatetime = Field(
        description="ISO 8601 with time zone, e.g. 2026-05-04T15:00+02:00"
    )
    contact_quote: str = Field(
        min_length=3,
        max_length=300,
        description="The contact's own words, copied exactly, proposing or accepting this time",
    )
    duration_minutes: int = Field(30, ge=15, le=120)
    topic: str = Field("Intro call", max_length=200)


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


async def _contact_said(ctx: ToolContext, quote: str) -> bool:
    wanted = _normalize(quote)
    return any(wanted in _normalize(text) for text in await ctx.scope.contact_texts())


def time_forms(moment: datetime) -> list[str]:
    """Ways a person writes the clock time of `moment`: 9:30, 09:30, 9.30, 9:30am, 9 am..."""
    hour, minute = moment.hour, moment.minute
    twelve, half = hour % 12 or 12, "am" if hour < 12 else "pm"
    forms = [f"{hour}:{minute:02}", f"{hour:02}:{minute:02}", f"{hour}.{minute:02}"]
    forms += [f"{twelve}:{minute:02}{half}", f"{twelve}:{minute:02} {half}"]
    forms += [f"{twelve}.{minute:02}{half}", f"{twelve}.{minute:02} {half}"]
    if minute == 0:
        forms += [f"{twelve}{half}", f"{twelve} {half}", f"{hour}h", f"{hour:02}h"]
        forms += ["noon", "midday"] if hour == 12 else []
    return forms


def names_the_time(quote: str, starts_at: datetime, zones: Sequence[ZoneInfo]) -> bool:
    """Whether the contact's words name the meeting's clock time in one of `zones` (theirs,
    the owner's, UTC): agreeing to "the first one" or "yes, book me" names no time, and a
    model could attach such words to any slot it liked."""
    said = _normalize(quote)
    for zone in zones:
        for form in time_forms(starts_at.astimezone(zone)):
            if re.search(r"(?<![\d:.])" + re.escape(form) + r"(?![\d]|[:.]\d)", said):
                return True
    return False


def _check_time(starts_at: datetime) -> None:
    now = utcnow()
    if starts_at <= now:
        raise ToolRefused("invalid_time", "starts_at is in the past")
    if starts_at > now + timedelta(days=MAX_DAYS_AHEAD):
        raise ToolRefused("invalid_time", f"starts_at is more than {MAX_DAYS_AHEAD} days ahead")


@tool(mutates=True)
async def schedule_meeting(ctx: ToolContext, args: ScheduleMeetingArgs) -> ToolOutcome:
    """Book a meeting with the contact at a free time (from find_meeting_times) that THEY
    proposed or accepted. Quote their words exactly in contact_quote; a time the contact never
    agreed to, or one that is not free, is refused. If the contact already has an upcoming
    meeting, it is moved to the new time (they get an updated invite), not booked twice."""
    _check_time(args.starts_at)
    if not await _contact_said(ctx, args.contact_quote):
        raise ToolRefused(
            "not_agreed",
            "contact_quote is not in anything the contact wrote; ask them for a time first.",
        )
    owner_zone = (
        await owner_hours(ctx, await meeting_owner(ctx, await ctx.scope.open_deal()))
    ).zone
    zones = [zone_of(await ctx.scope.contact(), owner_zone), owner_zone, ZoneInfo("UTC")]
    if not names_the_time(args.contact_quote, args.starts_at, zones):
        raise ToolRefused(
            "time_not_named",
            "contact_quote does not name this time. Ask the contact to confirm the time in "
            'their own words (for example "Tuesday 10:30 works"), then quote that.',
        )
    existing = await ctx.scope.meetings.upcoming(utcnow())
    if existing is not None:
        return await _move(ctx, existing, args)
    deal = await ctx.scope.open_deal()
    owner = await meeting_owner(ctx, deal)
    await check_slot(ctx, owner, args.starts_at, args.duration_minutes)
    if ctx.run.dry_run:
        return ToolOutcome({"would_book": args.starts_at.isoformat(), "owner": owner})
    meeting = await ctx.scope.meetings.book(
        deal,
        starts_at=args.starts_at,
        duration_minutes=args.duration_minutes,
        topic=args.topic,
        run_id=ctx.run.run_id,
        owner=owner,
    )
    if meeting is None:  # another conversation's booking of this time committed first
        log.info("run %s: slot %s of %s was just taken", ctx.run.run_id, args.starts_at, owner)
        raise ToolRefused("slot_taken", JUST_TAKEN)
    await _announce(ctx, "booked", meeting)
    return ToolOutcome(
        {
            "meeting_id": meeting.id,
            "starts_at": args.starts_at.isoformat(),
            "owner": owner,
            "note": BOOKED_NOTE,
        }
    )


async def _move(ctx: ToolContext, meeting: Meeting, args: ScheduleMeetingArgs) -> ToolOutcome:
    """Reschedule the contact's upcoming meeting to the time they now agreed to."""
    base = {"meeting_id": meeting.id, "owner": meeting.owner}
    if meeting.starts_at == args.starts_at and meeting.duration_minutes == args.duration_minutes:
        return ToolOutcome({**base, "starts_at": args.starts_at.isoformat(), "unchanged": True})
    if meeting.sequence >= MAX_AGENT_MOVES:
        raise ToolRefused(
            "too_many_moves",
            f"This meeting was moved {meeting.sequence} times already; hand off to a person "
            "to arrange it.",
        )
    owner = meeting.owner or TEAM_OWNER
    await check_slot(ctx, owner, args.starts_at, args.duration_minutes, moving=meeting)
    was = meeting.starts_at
    if ctx.run.dry_run:
        return ToolOutcome({**base, "would_move_to": args.starts_at.isoformat()})
    if not await ctx.scope.meetings.move(meeting, args.starts_at, args.duration_minutes):
        raise ToolRefused("slot_taken", JUST_TAKEN)
    await _announce(ctx, "moved", meeting, was)
    return ToolOutcome(
        {
            **base,
            "starts_at": args.starts_at.isoformat(),
            "rescheduled_from": was.isoformat(),
            "note": MOVED_NOTE,
        }
    )


async def _announce(
    ctx: ToolContext, change: Change, meeting: Meeting, was: datetime | None = None
) -> None:
    """The contact's invite on this conversation's channel, and the owner's staff post."""
    contact = await ctx.scope.contact()
    team_zone = (ctx.run.hours or FALLBACK_HOURS).zone
    organizer = await ctx.scope.meetings.organizer(meeting.owner)
    announced = announcement(
        change,
        meeting,
        contact,
        organizer,
        zone=zone_of(contact, team_zone),
        team_zone=team_zone,
        moved_from=was,
    )
    recipient = await ctx.scope.address(ctx.run.channel)
    if recipient is not None and not contact.unreachable:
        await ctx.scope.meetings.queue_notice(
            key=announced.contact_key,
            channel=ctx.run.channel,
            recipient=recipient,
            text=announced.contact_text,
            meta=announced.contact_meta,
            run_id=ctx.run.run_id,
        )
    await ctx.ask_staff(
        key=announced.staff_key,
        kind=STAFF_KIND,
        text=announced.staff_text,
        meta={"meeting_id": meeting.id, "run_id": ctx.run.run_id},
    )
