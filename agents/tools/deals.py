"""Pipeline and calendar: move a deal, book a meeting. Destructive moves wait for staff.

A meeting is booked only on free slots of its owner's working hours (`agents.tools.meetings`),
and two conversations cannot book the same slot: the store's unique index decides the race.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from agents.tools.meetings import JUST_TAKEN, check_slot, meeting_owner
from bot.store.models import Deal
from bot.store.types import utcnow

Stage = Literal["new", "qualified", "meeting_booked", "proposal", "negotiation", "won", "lost"]
NEEDS_CONFIRMATION: frozenset[str] = frozenset({"won", "lost"})
"""Stages that close a deal: an agent may only propose them; staff confirm."""
MAX_DAYS_AHEAD = 90
log = logging.getLogger("agents.tools")


class UpdateDealStageArgs(ToolArgs):
    stage: Stage = Field(description="The new stage")
    deal_id: int | None = Field(None, description="Omit for the contact's open deal")


async def _own_deal(ctx: ToolContext, deal_id: int | None) -> Deal | None:
    if deal_id is None:
        return await ctx.scope.open_deal()
    deal = await ctx.scope.deal(deal_id)
    if deal is None:
        raise ToolRefused("out_of_scope", f"deal {deal_id} is not this contact's deal")
    return deal


async def _propose(ctx: ToolContext, action: str, arguments: dict[str, object]) -> ToolOutcome:
    key = f"run:{ctx.run.run_id}:{action}:{sorted(arguments.items())}"
    if not ctx.run.dry_run:
        pending = await ctx.scope.ask_confirmation(
            key=key, run_id=ctx.run.run_id, action=action, arguments=arguments
        )
        details = ", ".join(f"{k}={v}" for k, v in arguments.items())
        await ctx.ask_staff(
            key=f"confirmation:{pending.id}",
            kind="confirmation",
            text=f"⚠️ {ctx.run.agent.name} asks to {action} ({details}). Approve?",
            meta={"confirmation_id": pending.id},
        )
    return ToolOutcome(
        {
            "pending_confirmation": True,
            "message": "Staff must approve this; do not tell the contact it is done.",
        }
    )


@tool(mutates=True)
async def update_deal_stage(ctx: ToolContext, args: UpdateDealStageArgs) -> ToolOutcome:
    """Move the contact's deal to a new pipeline stage (a deal is opened if there is none).
    Closing a deal as won or lost needs staff approval and is queued for them."""
    deal = await _own_deal(ctx, args.deal_id)
    if args.stage in NEEDS_CONFIRMATION:
        return await _propose(
            ctx, "update_deal_stage", {"deal_id": deal.id if deal else None, "stage": args.stage}
        )
    if ctx.run.dry_run:
        return ToolOutcome({"would_move": deal.id if deal else "new deal", "stage": args.stage})
    if deal is None:
        deal = await ctx.scope.start_deal()
    previous = await ctx.scope.move_stage(deal, args.stage)
    return ToolOutcome({"deal_id": deal.id, "from": previous, "to": args.stage})


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
    agreed to, or one that is not free, is refused."""
    _check_time(args.starts_at)
    if not await _contact_said(ctx, args.contact_quote):
        raise ToolRefused(
            "not_agreed",
            "contact_quote is not in anything the contact wrote; ask them for a time first.",
        )
    deal = await ctx.scope.open_deal()
    owner = await meeting_owner(ctx, deal)
    await check_slot(ctx, owner, args.starts_at, args.duration_minutes)
    if ctx.run.dry_run:
        return ToolOutcome({"would_book": args.starts_at.isoformat(), "owner": owner})
    meeting = await ctx.scope.book_slot(
        deal,
        starts_at=args.starts_at,
        duration_minutes=args.duration_minutes,
        topic=args.topic,
        run_id=ctx.run.run_id,
        owner=owner,
    )
    if meeting is None:  # another conversation's booking of this slot committed first
        log.info("run %s: slot %s of %s was just taken", ctx.run.run_id, args.starts_at, owner)
        raise ToolRefused("slot_taken", JUST_TAKEN)
    return ToolOutcome(
        {"meeting_id": meeting.id, "starts_at": args.starts_at.isoformat(), "owner": owner}
    )
