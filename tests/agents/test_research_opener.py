"""Openers: grounded in what was fetched, checked in code, and never anything but a draft."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from agents.budget import Price
from agents.definition import TEMPLATES_DIR, load_definition_file, parse_definition
from agents.guardrails import OutputPolicy
from agents.messages import ToolResult
from agents.research.opener import (
    DRAFT_OPENER,
    ExtractiveModel,
    Opener,
    check_opener,
    extractive_opener,
)
from agents.research.run import check_research_agent
from agents.research.sources import Passage, Prospect
from agents.research.writer import Attempt, OpenerWriter
from bot.core.errors import BudgetExceeded, ConfigurationError
from tests.support.models import ScriptedModel, call, turn

SITE = "https://acme.example/"
NEWS = "https://acme.example/news/lyon"
ANN = Prospect(1, "Ann Lee", "ann@acme.example", "Acme", SITE, "https://acme.example/feed")
PASSAGES = [
    Passage(
        "notes", None, "Salesperson's notes", "Met Ann at the Paris fair; wants fewer night shifts"
    ),
    Passage(
        "website",
        SITE,
        "Acme Robotics",
        "Acme builds bakery robots that knead, shape and bake bread overnight, so small "
        "bakeries open every morning with fresh loaves.",
    ),
    Passage("feed", NEWS, "Acme opens a second workshop in Lyon", "Forty ovens a month."),
]
GOOD = {
    "subject": "Your Lyon workshop",
    "opener": "Hi Ann, congratulations on the second workshop in Lyon. Robots that bake bread "
    "overnight sound like a gift to every early baker.",
    "sources": [NEWS, SITE],
}
AGENT = load_definition_file(TEMPLATES_DIR / "outbound-research.yaml")
POLICY = OutputPolicy()


def _opener(**changes: object) -> Opener:
    return Opener.model_validate({**GOOD, **changes})


def test_an_opener_citing_what_was_fetched_is_grounded() -> None:
    assert check_opener(_opener(), PASSAGES, POLICY, ANN) is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"sources": ["https://acme.example/about"]},
            f"it cites https://acme.example/about, not fetched in this run; cite only "
            f"{[SITE, NEWS]}",
        ),
        (
            {"opener": GOOD["opener"] + " See https://evil.example/offer."},
            "it links to https://evil.example/offer, which was not fetched in this run",
        ),
        (
            {"opener": GOOD["opener"] + "\n\nSecond paragraph with the whole pitch."},
            "write one paragraph: the opening of the email, not the whole email",
        ),
        (
            {"opener": "Hi Ann, I hope this finds you well and thriving today, Acme."},
            "it says nothing the cited passages say: ground it in what was fetched",
        ),
        (
            {"opener": GOOD["opener"] + " Ovens from $99 a month."},
            "the output policy blocks it (money-amount): Do not state prices or amounts; a "
            "salesperson confirms pricing.",
        ),
    ],
)
def test_an_opener_that_is_not_grounded_or_allowed_is_refused_with_the_reason(
    changes: dict[str, object], problem: str
) -> None:
    assert check_opener(_opener(**changes), PASSAGES, POLICY, ANN) == problem


def test_the_extractive_opener_quotes_what_was_fetched_and_cites_it() -> None:
    opener = extractive_opener(ANN, PASSAGES, POLICY)

    assert opener is not None
    assert opener.opener == (
        "Hi Ann, I was reading acme.example, where Acme says: “Acme builds bakery robots that "
        "knead, shape and bake bread overnight, so small bakeries open every morning with fresh "
        "loaves.” I also saw your recent news, “Acme opens a second workshop in Lyon”. I'd love "
        "to hear how Acme is thinking about what comes next."
    )
    assert opener.sources == [SITE, NEWS] and opener.subject == "A note for Acme"
    assert "night shifts" not in opener.opener  # the notes are never quoted


def test_no_extractive_opener_without_something_fetched_to_quote() -> None:
    notes_only = [PASSAGES[0], Passage("website", SITE, "Acme", "Home\nAbout us")]

    assert extractive_opener(ANN, notes_only, POLICY) is None


def test_a_sentence_the_policy_blocks_is_not_quoted() -> None:
    promise = Passage("website", SITE, "Acme", "We will give you a discount on every oven you buy.")

    assert extractive_opener(ANN, [promise], POLICY) is None


def test_an_amount_the_fetched_text_states_may_be_repeated_and_no_other() -> None:
    priced = Passage("website", SITE, "Acme", "Acme ovens bake bread overnight for $99 a month.")
    said = "Hi Ann, ovens that bake bread overnight for $99 a month sound like a bargain."

    assert check_opener(_opener(opener=said, sources=[SITE]), [priced], POLICY, ANN) is None
    made_up = _opener(opener=said.replace("$99", "$79"), sources=[SITE])
    assert check_opener(made_up, [priced], POLICY, ANN) == (
        "the output policy blocks it (money-amount): Do not state prices or amounts; a "
        "salesperson confirms pricing."
    )


def test_a_secret_or_the_system_prompt_is_never_drafted() -> None:
    policy = OutputPolicy(secrets=["sk-live-0123456789"])
    leaky = _opener(opener=GOOD["opener"] + " Our key is sk-live-0123456789.")

    assert check_opener(leaky, PASSAGES, policy, ANN) == (
        "the output policy blocks it (secret): Never repeat credentials or configuration."
    )


def _writer(model: ScriptedModel | ExtractiveModel, **agent: object) -> OpenerWriter:
    definition = parse_definition({**AGENT.model_dump(mode="json"), **agent})
    return OpenerWriter(definition, model, "gpt-test", Price(Decimal(1), Decimal(1)))


async def test_a_model_that_calls_send_message_is_refused_and_told_it_can_only_draft() -> None:
    model = ScriptedModel(
        turn("", call("send_message", {"text": "Hi Ann, buy now!"})),
        turn("", call("draft_opener", GOOD)),
    )
    attempt = Attempt()

    written = await _writer(model).write(ANN, PASSAGES, attempt)

    assert written.opener == _opener()
    assert attempt.refused == ["send_message"]
    [first, second] = model.requests
    assert [t.name for t in first.tools] == ["draft_opener"]  # never offered anything else
    refusal = second.messages[-1]
    assert isinstance(refusal, ToolResult) and refusal.is_error
    assert json.loads(refusal.content)["error"]["type"] == "not_allowed"
    kinds = [(kind, p.get("tool"), "error" in p) for kind, p in attempt.records]
    assert kinds == [
        ("model_call", None, False),
        ("tool_call", "send_message", True),
        ("model_call", None, False),
        ("tool_call", "draft_opener", False),
    ]


async def test_a_model_told_what_is_wrong_can_fix_its_opener() -> None:
    model = ScriptedModel(
        turn("", call("draft_opener", {**GOOD, "sources": ["https://acme.example/team"]})),
        turn("Here is my opener: Hi Ann."),
        turn("", call("draft_opener", GOOD)),
    )

    written = await _writer(model).write(ANN, PASSAGES, Attempt())

    assert written.opener == _opener()
    assert "not fetched in this run" in str(model.requests[1].messages[-1])
    assert "Call draft_opener" in str(model.requests[2].messages[-1])


async def test_no_opener_after_the_step_limit_says_why() -> None:
    model = ScriptedModel(*[turn("", call("send_message", {"text": "Hi"}))] * 3)
    attempt = Attempt()

    written = await _writer(model).write(ANN, PASSAGES, attempt)

    assert written.opener is None and attempt.steps == 3
    assert written.problem.startswith("no grounded opener in 3 model calls: This run only drafts")


async def test_the_per_run_budget_stops_the_writer() -> None:
    model = ScriptedModel(turn("", call("send_message", {"text": "Hi"}), tokens=(9000, 4000)))

    with pytest.raises(BudgetExceeded):
        await _writer(model).write(ANN, PASSAGES, Attempt())


async def test_offline_the_extractive_opener_goes_through_the_same_tool_call() -> None:
    attempt = Attempt()

    written = await _writer(ExtractiveModel()).write(ANN, PASSAGES, attempt)

    assert written.opener == extractive_opener(ANN, PASSAGES, POLICY)
    assert attempt.records[0][1]["tools"] == [DRAFT_OPENER.name]


def test_a_research_agent_with_send_message_or_any_tool_is_refused() -> None:
    check_research_agent(AGENT)  # the shipped one takes none

    with pytest.raises(ConfigurationError, match="has send_message in its tools"):
        check_research_agent(parse_definition({**AGENT.model_dump(), "tools": ["send_message"]}))
    with pytest.raises(ConfigurationError, match="takes no tools"):
        check_research_agent(parse_definition({**AGENT.model_dump(), "tools": ["get_contact"]}))
