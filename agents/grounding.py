"""Grounding, decided in code: may this reply go to the customer as it is?

A reply of an agent with a `knowledge_base` must cite at least one article that search_kb
returned in this run, and its confidence (the best retrieval score among the cited articles)
must reach the definition's `min_confidence`. A reply about a topic the definition has
reviewed (`review: [pricing, contract]`) goes to staff even when it is grounded. The model's
word counts for nothing here: what it cites is checked against what the run retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.definition import AgentDefinition
from agents.guardrails import review_topic


@dataclass(frozen=True, slots=True)
class Verdict:
    """Send as it is (`reason` None), or not, and why: no_citation | low_confidence |
    review:pricing | review:contract."""

    reason: str | None
    confidence: float | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def send(self) -> bool:
        return self.reason is None

    @property
    def for_review(self) -> bool:
        """Reviewed by the definition's choice: always a draft, never a handoff."""
        return bool(self.reason and self.reason.startswith("review:"))


def unknown_citations(cite: Sequence[int], retrieved: dict[int, dict[str, Any]]) -> list[int]:
    """Cited article ids that search_kb did not return in this run."""
    return [article_id for article_id in cite if article_id not in retrieved]


def judge(
    agent: AgentDefinition,
    text: str,
    cite: Sequence[int],
    retrieved: dict[int, dict[str, Any]],
) -> Verdict:
    """The verdict on a reply citing `cite`, of which every id is in `retrieved`."""
    citations = [retrieved[article_id] for article_id in dict.fromkeys(cite)]
    confidence = max((float(c["score"]) for c in citations), default=None)
    grounding = agent.knowledge_base
    if grounding is not None:
        if not citations:
            return Verdict("no_citation", None, [])
        if confidence is None or confidence < grounding.min_confidence:
            return Verdict("low_confidence", confidence, citations)
    topic = review_topic(text, agent.review)
    if topic is not None:
        return Verdict(f"review:{topic}", confidence, citations)
    return Verdict(None, confidence, citations)
