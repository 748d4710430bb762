"""Lead scoring: a pure function from the rubric and what was recorded to a score and why.

Nothing here reads or writes the store, and nothing a model says reaches it except through
the answers `record_answer` saved: the same answers, tags and source always give the same
score and the same reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from agents.definition import AnswerRule, PhraseRule, RangeRule, Scoring

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
Decision = Literal["qualified", "nurture", "handoff"]


@dataclass(frozen=True, slots=True)
class LeadScore:
    """A computed score and one reason per rule that gave points, in rubric order."""

    score: int
    reasons: tuple[str, ...]


def first_number(text: str) -> float | None:
    """The first number written in `text` ('12-person' -> 12, '1,200 staff' -> 1200)."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    digits = found.group().replace(",", "")
    try:
        return float(digits)
    except ValueError:  # '1,2,,' and the like: a number-looking thing that is not one
        return None


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _mentions(text: str, phrase: str) -> bool:
    """`phrase` as whole words in `text` ('lead' is in 'lead tracking', not in 'misleading')."""
    pattern = r"(?<!\w)" + re.escape(_normalize(phrase)) + r"(?!\w)"
    return re.search(pattern, text) is not None


def _matched(text: str, rule: PhraseRule) -> str | None:
    return next((phrase for phrase in rule.match if _mentions(text, phrase)), None)


def _describe_range(rule: RangeRule) -> str:
    def show(value: float) -> str:
        return f"{value:g}"

    if rule.min is None:
        return f"at most {show(rule.max or 0)}"
    if rule.max is None:
        return f"at least {show(rule.min)}"
    return f"{show(rule.min)}-{show(rule.max)}"


def _in_range(number: float, rule: RangeRule) -> bool:
    return (rule.min is None or number >= rule.min) and (rule.max is None or number <= rule.max)


def _points(points: int) -> str:
    return f"{points:+d}"


def _score_answer(key: str, answer: str, rule: AnswerRule) -> list[tuple[int, str]]:
    """(points, reason) for each rule of `rule` that `answer` meets."""
    found: list[tuple[int, str]] = []
    text = _normalize(answer)
    number = first_number(answer)
    if number is not None:
        hit = next((r for r in rule.ranges if _in_range(number, r)), None)
        if hit is not None:
            reason = f"{key} {number:g} ({_describe_range(hit)}): {_points(hit.points)}"
            found.append((hit.points, reason))
    for choice in rule.choices:
        phrase = _matched(text, choice)
        if phrase is not None:
            found.append((choice.points, f"{key} '{phrase}': {_points(choice.points)}"))
            break
    for keyword in rule.keywords:
        phrase = _matched(text, keyword)
        if phrase is not None:
            reason = f"{key} mentions '{phrase}': {_points(keyword.points)}"
            found.append((keyword.points, reason))
    return found


def _score_labels(
    kind: str, points: Mapping[str, int], have: Iterable[str]
) -> list[tuple[int, str]]:
    wanted = {name.lower(): (name, value) for name, value in points.items()}
    found: list[tuple[int, str]] = []
    for label in dict.fromkeys(item.strip().lower() for item in have):
        if label in wanted:
            name, value = wanted[label]
            found.append((value, f"{kind} {name}: {_points(value)}"))
    return found


def score_lead(
    rubric: Scoring,
    answers: Mapping[str, object],
    tags: Iterable[str] = (),
    source: str | None = None,
) -> LeadScore:
    """The lead's score under `rubric`: the points of every rule its recorded answers, tags
    and lead source meet, and a reason for each. Unanswered questions score nothing."""
    found: list[tuple[int, str]] = []
    for key, rule in rubric.answers.items():
        answer = answers.get(key)
        if answer is not None and str(answer).strip():
            found += _score_answer(key, str(answer), rule)
    found += _score_labels("tag", rubric.tags, tags)
    if source:
        found += _score_labels("source", rubric.sources, [source])
    return LeadScore(sum(points for points, _ in found), tuple(reason for _, reason in found))


def decide(rubric: Scoring, score: int) -> Decision:
    """What a fully answered lead's score means: qualified, or the rubric's `below`."""
    return "qualified" if score >= rubric.threshold else rubric.below
