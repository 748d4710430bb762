"""The qualifying step behind `record_answer`: rescore the lead, and decide once all is known.

The score is computed in code (`agents.scoring`) from what was recorded, each time an answer
is stored; no tool lets the model set it. Once every question is answered the rubric decides:
at or above the threshold the lead is qualified and offered free meeting times; below it the
contact is tagged for nurture, or handed to a person with a structured summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.definition import Scoring
from agents.scoring import LeadScore, decide, score_lead
from agents.tools.base import HandoffRequest, ToolOutcome
from agents.tools.context import ToolContext
from agents.tools.meetings import offer_times


def _note(ctx: ToolContext, kind: str, payload: dict[str, Any]) -> None:
    # Held with the run's records: the executor writes them in this tool call's transaction,
    # after the run's earlier steps, so the audit trail keeps the order things happened in.
    ctx.run.unwritten.append(ctx.run.entry(kind, payload))


async def rescore(ctx: ToolContext, rubric: Scoring, answers: Mapping[str, object]) -> LeadScore:
    """The lead's score from its answers, tags and source; kept (and audited) when it changed."""
    contact = await ctx.scope.contact()
    scored = score_lead(rubric, answers, contact.tags or [], contact.lead_source)
    if ctx.run.dry_run:
        return scored
    before = contact.lead_score
    change = await ctx.scope.record_score(scored.score, scored.reasons, ctx.run.run_id)
    if change is not None:
        _note(
            ctx,
            "lead_scored",
            {"from": before, "to": scored.score, "reasons": list(scored.reasons)},
        )
    return scored


def handoff_summary(
    rubric: Scoring, scored: LeadScore, answers: Mapping[str, object], source: str | None
) -> str:
    """What the salesperson reads: the answers, the score and why, and the lead source."""
    why = "; ".join(scored.reasons) or "no rule of the rubric matched"
    return "\n".join(
        [
            f"Lead under the qualifying threshold: score {scored.score} "
            f"(threshold {rubric.threshold}).",
            "Answers: " + "; ".join(f"{key}: {value}" for key, value in answers.items()),
            f"Why this score: {why}",
            f"Source: {source or 'unknown'}",
        ]
    )


async def conclude(
    ctx: ToolContext,
    rubric: Scoring,
    scored: LeadScore,
    answers: Mapping[str, object],
    result: dict[str, Any],
) -> ToolOutcome:
    """The rubric's decision for a lead that answered every question, as the tool's outcome."""
    decision = decide(rubric, scored.score)
    result.update(decision=decision, qualified=decision == "qualified", threshold=rubric.threshold)
    if not ctx.run.dry_run:
        _note(ctx, "lead_decision", {"decision": decision, "score": scored.score})
    if decision == "qualified":
        return ToolOutcome(await _qualified(ctx, result))
    if decision == "nurture":
        if not ctx.run.dry_run:
            await ctx.scope.add_tag(rubric.nurture_tag)
        result["tagged"] = rubric.nurture_tag
        result["next"] = "Thank the contact warmly and finish; do not offer a meeting."
        return ToolOutcome(result)
    source = (await ctx.scope.contact()).lead_source
    reason = (
        f"lead scored {scored.score}, under the threshold of {rubric.threshold}: "
        "for a salesperson to decide"
    )
    result["handed_off"] = True
    return ToolOutcome(
        result, HandoffRequest(reason, handoff_summary(rubric, scored, answers, source))
    )


async def _qualified(ctx: ToolContext, result: dict[str, Any]) -> dict[str, Any]:
    if "schedule_meeting" not in ctx.run.agent.tools:
        result["next"] = "Thank the contact and finish: the lead is qualified."
        return result
    offered = await offer_times(ctx)
    result["free_times"] = offered["times"]
    result["next"] = (
        "Offer the contact these meeting times by their label; book with schedule_meeting "
        "only the one they pick, quoting their words."
        if offered["times"]
        else "No free meeting times soon: hand off to a person to arrange one."
    )
    return result
