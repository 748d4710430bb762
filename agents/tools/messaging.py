"""send_message: the only way an agent's words reach a contact."""

from __future__ import annotations

import hashlib

from pydantic import Field

from agents.guardrails import promises_handoff
from agents.run_state import RunState
from agents.tools.base import HandoffRequest, ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from bot.core.errors import GuardrailTripped

MAX_MESSAGES_PER_RUN = 3


class SendMessageArgs(ToolArgs):
    text: str = Field(min_length=1, max_length=12000, description="The message, plain text")
    contact_id: int | None = Field(
        None, description="Omit: messages go to this conversation's contact only"
    )


async def recipient_for(ctx: ToolContext, channel: str) -> str:
    """The contact's address on `channel`; refused for the model if there is none."""
    address = await ctx.scope.address(channel)
    if address is None:
        raise ToolRefused("unreachable", f"the contact has no {channel} address")
    return address


def check_policy(run: RunState, text: str) -> None:
    """Refuse a text the output policy blocks; the second block in a run ends the run."""
    violation = run.policy.check(text)
    if violation is None:
        return
    run.policy_blocks += 1
    if run.policy_blocks >= 2:
        raise GuardrailTripped(f"output policy blocked twice (last: {violation.rule})")
    raise ToolRefused(
        "blocked_by_policy",
        f"Not sent: rule '{violation.rule}' matched \"{violation.excerpt}\". {violation.explain} "
        "Rewrite the message without it, or hand off to a human.",
    )


async def queue_text(ctx: ToolContext, text: str, key: str) -> int:
    """Put `text` for the run's contact into the outbox under `key`; returns the item id."""
    run = ctx.run
    if (await ctx.scope.contact()).unreachable:
        raise ToolRefused("unreachable", "the contact blocked us or cannot be reached")
    recipient = await recipient_for(ctx, run.channel)
    return await ctx.scope.queue_message(
        key=key,
        channel=run.channel,
        recipient=recipient,
        text=text,
        run_id=run.run_id,
        automatic=run.proactive,
    )


@tool(mutates=True)
async def send_message(ctx: ToolContext, args: SendMessageArgs) -> ToolOutcome:
    """Send a message to the contact of this conversation on their channel. Facts in it must
    come from tool results; never promise prices, discounts or refunds."""
    ctx.require_own_contact(args.contact_id)
    run = ctx.run
    if run.messages_sent >= MAX_MESSAGES_PER_RUN:
        raise ToolRefused("too_many_messages", "You already sent enough this turn; finish now.")
    check_policy(run, args.text)
    handoff = (
        HandoffRequest("the agent told the contact a person would take over")
        if promises_handoff(args.text)
        else None
    )
    if run.dry_run:
        return ToolOutcome({"would_send": args.text}, handoff)
    digest = hashlib.sha256(args.text.encode()).hexdigest()[:16]
    item_id = await queue_text(ctx, args.text, f"run:{run.run_id}:send:{digest}")
    run.messages_sent += 1
    return ToolOutcome({"queued": True, "outbox_id": item_id}, handoff)
