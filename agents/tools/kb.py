"""The knowledge base and the conversation's category: look answers up, say what it is about."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agents.tools.base import ToolArgs, ToolOutcome, ToolRefused, tool
from agents.tools.context import ToolContext
from bot.store.kb import Hit

NOTHING_FOUND = "Nothing in the knowledge base matches. Do not guess an answer."


class SearchKbArgs(ToolArgs):
    query: str = Field(
        min_length=2,
        max_length=500,
        description="The customer's question, or its key words",
    )
    limit: int = Field(3, ge=1, le=8, description="How many passages to return")


def hit_card(hit: Hit) -> dict[str, Any]:
    """A hit as the model sees it (and as the run's audit records it)."""
    return {
        "article_id": hit.article_id,
        "title": hit.title,
        "url": hit.url,
        "heading": hit.heading,
        "passage": hit.passage,
        "score": hit.score,
    }


@tool()
async def search_kb(ctx: ToolContext, args: SearchKbArgs) -> ToolOutcome:
    """Search the help articles of the knowledge base. Returns the best passages, best first,
    each with its article id, title, url and a score from 0 to 1 (the share of the question's
    words the passage contains, rare words counting more; or, with semantic search on, its
    similarity to the question when that is higher). Answer only from these passages,
    and cite the article ids you used in send_message's `cite`."""
    semantic = ctx.run.semantic
    near = await semantic.near(args.query) if semantic is not None else None
    hits = await ctx.scope.search_kb(args.query, args.limit, near)
    if not hits:
        return ToolOutcome({"hits": [], "note": NOTHING_FOUND})
    for hit in hits:  # what a reply may cite and state: see send_message's grounding
        ctx.run.passages.append(f"{hit.heading}\n{hit.passage}")
        known = ctx.run.retrieved.get(hit.article_id)
        if known is None or hit.score > known["score"]:
            ctx.run.retrieved[hit.article_id] = hit_card(hit)
    return ToolOutcome({"hits": [hit_card(h) for h in hits]})


class TagConversationArgs(ToolArgs):
    category: str = Field(
        min_length=1, max_length=40, description="One of the categories in your instructions"
    )


@tool(mutates=True)
async def tag_conversation(ctx: ToolContext, args: TagConversationArgs) -> ToolOutcome:
    """Record what this conversation is about: one category from your list (how-to,
    billing, bug, account...). Staff see it with the conversation."""
    allowed = ctx.run.agent.categories
    category = args.category.strip().lower()
    if category not in allowed:
        raise ToolRefused("unknown_category", f"category must be one of {allowed}")
    if ctx.run.dry_run:
        return ToolOutcome({"would_tag": category})
    previous = await ctx.scope.set_category(
        category, ctx.audit, actor=ctx.run.actor, run_id=ctx.run.run_id
    )
    return ToolOutcome({"category": category, "previous": previous})
