"""Ending a run: hand off to people, or finish."""

from __future__ import annotations

from pydantic import Field

from agents.tools.base import FinishRequest, HandoffRequest, ToolArgs, ToolOutcome, tool
from agents.tools.context import ToolContext


class HandoffArgs(ToolArgs):
    reason: str = Field(min_length=3, max_length=500, description="Why a person is needed")
    summary: str = Field(
        "", max_length=2000, description="What the contact wants and what you learned"
    )


@tool()  # the loop performs the handoff, once per conversation
async def handoff_to_human(ctx: ToolContext, args: HandoffArgs) -> ToolOutcome:
    """Pass this conversation to a person on the team. Use it as soon as you cannot help with
    confidence, or the contact asks for a person, a refund, legal help or a price."""
    return ToolOutcome({"handed_off": True}, HandoffRequest(args.reason, args.summary))


class FinishArgs(ToolArgs):
    summary: str = Field("", max_length=1000, description="What this turn achieved")


@tool()
async def finish(ctx: ToolContext, args: FinishArgs) -> ToolOutcome:
    """End your turn without sending anything more (use after send_message)."""
    return ToolOutcome({"finished": True}, FinishRequest(args.summary))
