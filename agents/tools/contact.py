"""Read the contact and the conversation; record qualifying answers (which rescore the lead)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from agents.tools.qualifying import conclude, rescore
from bot.store.models import Contact


class GetContactArgs(ToolArgs):
    contact_id: int | None = Field(
        None, description="Omit for this conversation's contact (the only one you may read)"
    )


def contact_card(contact: Contact) -> dict[str, object]:
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "telegram_username": contact.telegram_username,
        "tags": list(contact.tags or []),
        "lead_score": contact.lead_score,
        "owner": contact.owner,
        "lead_source": contact.lead_source,
        "unreachable": contact.unreachable,
        "fields": dict(contact.custom_fields or {}),
    }


@tool()
async def get_contact(ctx: ToolContext, args: GetContactArgs) -> ToolOutcome:
    """Fetch the contact record of this conversation: name, email, tags, lead score, owner,
    recorded answers, and their open deal."""
    ctx.require_own_contact(args.contact_id)
    contact = await ctx.scope.contact()
    deal = await ctx.scope.open_deal()
    card = contact_card(contact)
    latest = await ctx.scope.latest_score_change()
    card["lead_score_reasons"] = list(latest.reasons) if latest is not None else []
    card["open_deal"] = (
        {"id": deal.id, "title": deal.title, "stage": deal.stage, "owner": deal.owner}
        if deal
        else None
    )
    return ToolOutcome(card)


class GetRecentMessagesArgs(ToolArgs):
    contact_id: int | None = Field(None, description="Omit for this conversation's contact")
    n: int = Field(10, ge=1, le=50, description="How many of the latest messages")


@tool()
async def get_recent_messages(ctx: ToolContext, args: GetRecentMessagesArgs) -> ToolOutcome:
    """Fetch the latest messages of this conversation, oldest first."""
    ctx.require_own_contact(args.contact_id)
    messages = await ctx.scope.recent_messages(args.n)
    return ToolOutcome(
        {
            "messages": [
                {"from": m.author, "text": m.text, "at": m.created_at.isoformat()} for m in messages
            ]
        }
    )


class RecordAnswerArgs(ToolArgs):
    key: str = Field(description="The question's key, as listed in your instructions")
    answer: str = Field(min_length=1, max_length=1000, description="The contact's answer")


@tool(mutates=True)
async def record_answer(ctx: ToolContext, args: RecordAnswerArgs) -> ToolOutcome:
    """Save the contact's answer to one of your qualifying questions. The lead score is
    computed from the answers by the system (you cannot set it); once every question is
    answered, the result says whether the lead is qualified and what to do next."""
    keys = [q.key for q in ctx.run.agent.questions]
    if args.key not in keys:
        raise ToolRefused("unknown_question", f"key must be one of {keys}")
    if ctx.run.dry_run:
        stored = dict((await ctx.scope.contact()).custom_fields or {})
        answers = {**stored, args.key: args.answer}
    else:
        answers = await ctx.scope.record_answer(args.key, args.answer)
    remaining = [k for k in keys if k not in answers]
    result: dict[str, Any] = {"recorded": args.key, "remaining_questions": remaining}
    rubric = ctx.run.agent.scoring
    if rubric is None:
        return ToolOutcome(result)
    scored = await rescore(ctx, rubric, answers)
    result["lead_score"] = scored.score
    if remaining:
        return ToolOutcome(result)
    asked = {key: answers[key] for key in keys}
    return await conclude(ctx, rubric, scored, asked, result)
