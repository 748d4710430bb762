"""send_message: the only way an agent's words reach a contact."""

from __future__ import annotations

import hashlib

from pydantic import Field

from agents.definition import HOLDING_MESSAGE
from agents.grounding import Verdict, judge, unknown_citations
from agents.guardrails import promises_handoff
from agents.run_state import RunState
from agents.tools.base import (
    FinishRequest,
    HandoffRequest,
    ToolArgs,
    ToolOutcome,
    ToolRefused,
    tool,
)
from agents.tools.context import ToolContext
from bot.core.errors import GuardrailTripped
from bot.desk.drafts import WHY, with_sources

MAX_MESSAGES_PER_RUN = 3


class SendMessageArgs(ToolArgs):
    text: str = Field(min_length=1, max_length=12000, description="The message, plain text")
    contact_id: int | None = Field(
        None, description="Omit: messages go to this conversation's contact only"
    )
    cite: list[int] = Field(
        [],
        max_length=5,
        description="Ids of the search_kb articles this answer rests on (article_id)",
    )


async def recipient_for(ctx: ToolContext, channel: str) -> str:
    """The contact's address on `channel`; refused for the model if there is none."""
    address = await ctx.scope.address(channel)
    if address is None:
        raise ToolRefused("unreachable", f"the contact has no {channel} address")
    return address


def check_policy(run: RunState, text: str) -> None:
    """Refuse a text the output policy blocks; the second block in a run ends the run."""
    violation = run.policy.leak(text, run.system_prompt) or run.policy.check(text, run.grounds())
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
    come from tool results; never promise prices, discounts or refunds. Cite the search_kb
    articles an answer rests on: an answer the code cannot ground goes to staff instead."""
    ctx.require_own_contact(args.contact_id)
    run = ctx.run
    if run.messages_sent >= MAX_MESSAGES_PER_RUN:
        raise ToolRefused("too_many_messages", "You already sent enough this turn; finish now.")
    unknown = unknown_citations(args.cite, run.retrieved)
    if unknown:
        raise ToolRefused(
            "unknown_citation",
            f"Articles {unknown} were not returned by search_kb in this conversation turn. "
            "Cite only article ids that search_kb returned, or search first.",
        )
    check_policy(run, args.text)
    verdict = judge(run.agent, args.text, args.cite, run.retrieved)
    if run.proactive or (run.agent.knowledge_base is None and not run.agent.review):
        verdict = Verdict(None, verdict.confidence, verdict.citations)
    if not verdict.send:
        return await _not_sent_as_is(ctx, args.text, verdict)
    handoff = (
        HandoffRequest("the agent told the contact a person would take over")
        if promises_handoff(args.text)
        else None
    )
    text = args.text
    if verdict.citations and run.agent.knowledge_base and run.agent.knowledge_base.cite_sources:
        text = with_sources(text, verdict.citations)
    if run.dry_run:
        return ToolOutcome({"would_send": text}, handoff)
    digest = hashlib.sha256(args.text.encode()).hexdigest()[:16]
    item_id = await queue_text(ctx, text, f"run:{run.run_id}:send:{digest}")
    run.messages_sent += 1
    result: dict[str, object] = {"queued": True, "outbox_id": item_id}
    if verdict.confidence is not None:
        result["confidence"] = round(verdict.confidence, 3)
    return ToolOutcome(result, handoff)


async def _not_sent_as_is(ctx: ToolContext, text: str, verdict: Verdict) -> ToolOutcome:
    """An answer the code will not send on its own: a draft for staff (with a holding
    message to the customer), or a handoff, as the definition says. Either ends the run."""
    run, grounding = ctx.run, ctx.run.agent.knowledge_base
    reason = str(verdict.reason)
    why = WHY.get(reason, reason)
    if not verdict.for_review and grounding is not None and grounding.below == "handoff":
        summary = f"Unsent answer ({why}): {text}"
        return ToolOutcome(
            {"sent": False, "why": why}, HandoffRequest(f"answer not sent: {why}", summary)
        )
    if run.dry_run:
        return ToolOutcome({"would_draft": text, "why": why}, FinishRequest(f"drafted: {why}"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    draft = await ctx.draft_for_staff(
        key=f"run:{run.run_id}:draft:{digest}",
        text=text,
        reason=reason,
        citations=verdict.citations,
        confidence=verdict.confidence,
    )
    holding = grounding.holding_message if grounding is not None else HOLDING_MESSAGE
    await queue_text(ctx, holding, f"run:{run.run_id}:holding")
    run.messages_sent += 1
    note = f"Not sent: {why}. Staff review it as draft {draft.id}; the customer was told."
    return ToolOutcome(
        {"sent": False, "drafted": True, "draft_id": draft.id, "why": why, "note": note},
        FinishRequest(f"answer drafted for staff: {why}"),
    )
