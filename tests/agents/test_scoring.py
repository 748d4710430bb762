"""Lead scoring is a pure function of the rubric and what was recorded, with a reason a rule."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agents.definition import TEMPLATES_DIR, Scoring, load_definition_file, parse_definition
from agents.scoring import decide, first_number, score_lead
from bot.core.errors import ConfigurationError
from tests.support.harness import BASE_AGENT

RUBRIC = Scoring.model_validate(
    {
        "threshold": 50,
        "answers": {
            "need": {
                "keywords": [
                    {"match": ["lead", "pipeline"], "points": 20},
                    {"match": ["follow-up"], "points": 10},
                ]
            },
            "team_size": {
                "ranges": [
                    {"max": 1, "points": 0},
                    {"min": 2, "max": 9, "points": 15},
                    {"min": 10, "points": 30},
                ]
            },
            "timeline": {
                "choices": [
                    {"match": ["not sure"], "points": -10},
                    {"match": ["asap", "this week"], "points": 30},
                    {"match": ["next month"], "points": 20},
                ]
            },
        },
        "tags": {"VIP": 25},
        "sources": {"referral": 15},
    }
)


def test_three_answers_give_the_sum_of_their_rules_with_one_reason_each() -> None:
    scored = score_lead(
        RUBRIC,
        {
            "need": "Lead tracking and follow-up",
            "team_size": "a 12-person agency",
            "timeline": "ASAP",
        },
    )

    assert scored.score == 20 + 10 + 30 + 30
    assert scored.reasons == (
        "need mentions 'lead': +20",
        "need mentions 'follow-up': +10",
        "team_size 12 (at least 10): +30",
        "timeline 'asap': +30",
    )


def test_only_the_first_matching_choice_and_range_count() -> None:
    # "not sure" comes first in the rubric, so "not sure, maybe this week" is the hesitant one.
    scored = score_lead(RUBRIC, {"timeline": "not sure, maybe this week", "team_size": "5 or 50"})

    assert scored.score == -10 + 15
    assert scored.reasons == ("team_size 5 (2-9): +15", "timeline 'not sure': -10")


def test_words_match_whole_and_in_any_case_and_unanswered_questions_score_nothing() -> None:
    assert score_lead(RUBRIC, {"need": "Misleading PIPELINES"}).score == 0
    assert score_lead(RUBRIC, {"need": "our Pipeline"}).reasons == (
        "need mentions 'pipeline': +20",
    )
    assert score_lead(RUBRIC, {}).score == 0
    assert score_lead(RUBRIC, {"team_size": "just me and my dog"}).reasons == ()


def test_tags_and_lead_source_add_their_points_in_any_case() -> None:
    scored = score_lead(RUBRIC, {}, tags=["vip", "VIP", "newsletter"], source="Referral")

    assert scored.score == 25 + 15
    assert scored.reasons == ("tag VIP: +25", "source referral: +15")


def test_the_same_inputs_always_give_the_same_score() -> None:
    answers: dict[str, Any] = {"need": "pipeline", "team_size": "3", "timeline": "next month"}
    assert score_lead(RUBRIC, answers) == score_lead(RUBRIC, dict(reversed(answers.items())))


@pytest.mark.parametrize(
    ("text", "number"),
    [("12 people", 12), ("1,200 staff", 1200), ("about 7.5k", 7.5), ("a dozen", None)],
)
def test_the_first_number_of_an_answer_is_read(text: str, number: float | None) -> None:
    assert first_number(text) == number


def test_the_threshold_decides_and_below_it_the_rubric_says_what_happens() -> None:
    assert decide(RUBRIC, 50) == "qualified"
    assert decide(RUBRIC, 49) == "handoff"
    nurturing = RUBRIC.model_copy(update={"below": "nurture"})
    assert decide(nurturing, 10) == "nurture"


def _definition(scoring: dict[str, Any]) -> None:
    parse_definition(
        {
            **BASE_AGENT,
            "tools": [*BASE_AGENT["tools"], "record_answer"],
            "questions": [{"key": "team_size", "ask": "How many are you?"}],
            "scoring": scoring,
        }
    )


def test_a_rubric_for_a_question_the_agent_does_not_ask_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"scoring\.answers names no question: budget"):
        _definition({"threshold": 10, "answers": {"budget": {"keywords": []}}})


@pytest.mark.parametrize(
    ("scoring", "reason"),
    [
        ({"answers": {}}, "field scoring.threshold: Field required"),
        ({"threshold": 1, "below": "ignore"}, "field scoring.below"),
        ({"threshold": 1, "answers": {"team_size": {"ranges": [{"points": 5}]}}}, "min, max"),
        (
            {
                "threshold": 1,
                "answers": {"team_size": {"ranges": [{"min": 9, "max": 2, "points": 1}]}},
            },
            "min is above its max",
        ),
        (
            {
                "threshold": 1,
                "answers": {"team_size": {"choices": [{"match": [" "], "points": 1}]}},
            },
            "empty",
        ),
        ({"threshold": 1, "score": 100}, "field scoring.score: Extra inputs are not permitted"),
    ],
    ids=["no-threshold", "unknown-below", "empty-range", "inverted-range", "blank-phrase", "extra"],
)
def test_an_invalid_rubric_is_refused_naming_the_field(
    scoring: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(reason)):
        _definition(scoring)


def test_the_shipped_lead_template_scores_a_good_lead_above_its_threshold() -> None:
    definition = load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml")
    assert definition.scoring is not None and "find_meeting_times" in definition.tools
    good = {"need": "We need lead tracking", "team_size": "12 people", "timeline": "next month"}
    weak = {"need": "a to-do list", "team_size": "just me", "timeline": "no rush"}

    assert score_lead(definition.scoring, good).score == 70
    assert decide(definition.scoring, score_lead(definition.scoring, weak).score) == "handoff"
