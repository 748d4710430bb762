"""The pipeline: move a deal. Destructive moves wait for staff.

Meetings are booked by `schedule_meeting`, in `agents.tools.meetings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from bot.store.models import Deal

Stage = Literal["new", "qualified", "meeting_booked", "proposal", "negotiation", "won", "lost"]
NEEDS_CONFIRMATION: frozenset[str] = frozenset({"won", "lost"})
"""Stages that close a deal: an agent may only propose them; staff confirm."""


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
