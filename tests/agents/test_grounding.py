"""Grounding in code: a support reply is sent only when it cites what search_kb found in the
run, with enough confidence; otherwise it becomes a draft for staff (or a handoff). Amounts
and plan names pass only when the run's passages or the agent's facts contain them."""

from __future__ import annotations

import json
from typing import Any

from agents.definition import TEMPLATES_DIR
from agents.kb import import_paths
from agents.messages import ToolResult
from agents.providers.offline import OfflineProvider
from bot.store.models import AuditEvent, Draft, KbArticle, OutboxItem
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, call, turn

HOLDING = "A colleague is checking this and will reply here."
SUPPORT: dict[str, Any] = {
    "tools": ["search_kb", "send_message", "handoff_to_human"],
    "knowledge_base": {"min_confidence": 0.5, "holding_message": HOLDING},
}
PASSWORD_URL = "https://help.parrotdesk.example/password"


async def article_id(harness: Harness, title: str) -> int:
    [article] = await harness.rows(KbArticle, KbArticle.title == title)
    return int(article.id)


async def with_kb(harness: Harness, **changes: Any) -> None:
    await import_paths(harness.db, [TEMPLATES_DIR / "kb"])
    await harness.add_agent(**(SUPPORT | changes))


def customer_texts(harness: Harness) -> list[str]:
    return [text for _, text in harness.channel.delivered]


def sends_seen(model: ScriptedModel) -> list[dict[str, Any]]:
    """What the model was told of its send_message calls, in order."""
    results = [m for m in model.requests[-1].messages if isinstance(m, ToolResult)]
    return [json.loads(r.content) for r in results if r.name == "send_message"]


def search(query: str, id: str = "s") -> Any:
    return turn("", call("search_kb", {"query": query}, id=id))


def reply(text: str, cite: list[int], id: str = "r") -> Any:
    return turn("", call("send_message", {"text": text, "cite": cite}, id=id))


async def test_a_cited_confident_answer_is_sent_with_the_articles_title_and_link(
    harness: Harness,
) -> None:
    await with_kb(harness)
    password = await article_id(harness, "Reset your password")
    answer = "Open the sign-in page and click Forgot password?, then follow the email's link."
    harness.use_model(
        ScriptedModel(
            search("I forgot my password"), reply(answer, [password]), turn("", call("finish"))
        )
    )

    outcome = await harness.answer("I forgot my password")

    assert outcome.status == "finished"
    [sent] = customer_texts(harness)
    assert sent == f"{answer}\n\nSource: Reset your password: {PASSWORD_URL}"
    assert await harness.rows(Draft) == []


async def test_an_answer_citing_nothing_becomes_a_draft_and_the_customer_is_told_to_wait(
    harness: Harness,
) -> None:
    await with_kb(harness)
    made_up = "Yes, we accept bitcoin and every other cryptocurrency."
    harness.use_model(ScriptedModel(search("pay in bitcoin"), turn(made_up)))

    outcome = await harness.answer("Can I pay in bitcoin?")

    assert outcome.status == "finished"
    assert customer_texts(harness) == [HOLDING]  # never the unchecked answer
    [draft] = await harness.rows(Draft)
    assert (draft.kind, draft.status, draft.reason) == ("reply", "pending", "no_citation")
    assert (draft.text, draft.question) == (made_up, "Can I pay in bitcoin?")
    [(_, card)] = harness.staff.delivered
    assert f"Draft #{draft.id}" in card and made_up in card and "Can I pay in bitcoin?" in card
    [post] = await harness.rows(OutboxItem, OutboxItem.channel == "staff")
    assert post.meta["draft_id"] == draft.id  # the staff channel puts the buttons on it
    [created] = await harness.rows(AuditEvent, AuditEvent.kind == "draft_created")
    assert created.payload["reason"] == "no_citation"


async def test_a_weak_match_is_drafted_with_its_confidence_and_citations(
    harness: Harness,
) -> None:
    await with_kb(harness)
    billing = await article_id(harness, "Billing, payments and invoices")
    text = "You can pay by card or by bank transfer."
    harness.use_model(ScriptedModel(search("Can I pay in bitcoin?"), reply(text, [billing])))

    await harness.answer("Can I pay in bitcoin?")

    [draft] = await harness.rows(Draft)
    assert draft.reason == "low_confidence"
    assert draft.confidence is not None and draft.confidence < 0.5
    assert [c["article_id"] for c in draft.citations] == [billing]
    assert customer_texts(harness) == [HOLDING]


async def test_citing_an_article_the_run_never_retrieved_is_refused(harness: Harness) -> None:
    await with_kb(harness)
    password = await article_id(harness, "Reset your password")
    model = ScriptedModel(
        # The worst a model can do: cite a real article it did not look up this run, then
        # one that does not exist, then give up.
        reply("Click Forgot password.", [password], id="1"),
        reply("Click Forgot password.", [999_999], id="2"),
        turn("", call("finish")),
    )
    harness.use_model(model)

    await harness.answer("I forgot my password")

    assert customer_texts(harness) == []
    errors = [r["error"]["type"] for r in sends_seen(model)]
    assert errors == ["unknown_citation", "unknown_citation"]
    refused = [
        e.payload["error"]["type"]
        for e in await harness.rows(AuditEvent, AuditEvent.kind == "tool_call")
        if e.payload["tool"] == "send_message"
    ]
    assert refused == errors  # and the audit trail has both


async def test_below_handoff_hands_the_unsent_answer_to_staff_instead(harness: Harness) -> None:
    await with_kb(harness, knowledge_base={"min_confidence": 0.5, "below": "handoff"})
    harness.use_model(ScriptedModel(search("pay in bitcoin"), turn("Sure, bitcoin works.")))

    outcome = await harness.answer("Can I pay in bitcoin?")

    assert outcome.status == "handed_off"
    assert await harness.rows(Draft) == []
    assert all("bitcoin works" not in text for text in customer_texts(harness))
    assert any("Sure, bitcoin works." in card for _, card in harness.staff.delivered)


async def test_an_amount_passes_only_when_the_runs_passages_or_the_facts_hold_it(
    harness: Harness,
) -> None:
    await with_kb(harness, facts=["The Enterprise plan starts at $900 per month."])
    plans = await article_id(harness, "Plans and prices")
    model = ScriptedModel(
        search("How much is the Team plan?"),
        reply("The Team plan is $39 per month.", [plans], id="1"),  # not what it says
        reply("The Team plan is $49 per month; Enterprise starts at $900.", [plans], id="2"),
        turn("", call("finish")),
    )
    harness.use_model(model)

    await harness.answer("How much is the Team plan per month?")

    blocked, sent_result = sends_seen(model)
    assert blocked["error"]["type"] == "blocked_by_policy"
    assert "money-amount" in blocked["error"]["message"]
    assert sent_result["queued"] is True
    [sent] = customer_texts(harness)
    assert sent.startswith("The Team plan is $49 per month; Enterprise starts at $900.")
    assert "Source: Plans and prices" in sent


async def test_an_amount_with_no_passage_behind_it_is_blocked(harness: Harness) -> None:
    await harness.add_agent()  # no knowledge base, no facts: every amount is blocked
    harness.use_model(
        ScriptedModel(turn("It costs $49."), turn("A salesperson will confirm the price."))
    )
    await harness.answer("How much?")
    assert customer_texts(harness) == ["A salesperson will confirm the price."]


async def test_a_grounded_pricing_answer_still_goes_to_staff_when_pricing_is_reviewed(
    harness: Harness,
) -> None:
    await with_kb(harness, review=["pricing", "contract"])
    plans = await article_id(harness, "Plans and prices")
    text = "The Team plan is $49 per month."
    harness.use_model(ScriptedModel(search("How much is the Team plan?"), reply(text, [plans])))

    await harness.answer("How much is the Team plan per month?")

    [draft] = await harness.rows(Draft)
    assert draft.reason == "review:pricing" and draft.confidence == 1.0
    assert customer_texts(harness) == [HOLDING]


async def test_offline_the_support_agent_sends_the_best_passage_with_its_citation(
    harness: Harness,
) -> None:
    await with_kb(harness)
    harness.use_model(OfflineProvider())

    await harness.answer("How do I reset my password?")

    [sent] = customer_texts(harness)
    passage, _, source = sent.rpartition("\n\nSource: ")
    assert source == f"Reset your password: {PASSWORD_URL}"
    [article] = await harness.rows(KbArticle, KbArticle.title == "Reset your password")
    assert " ".join(passage.split()) in " ".join(article.body.split())  # as written


async def test_offline_a_weak_match_is_drafted_and_nothing_found_is_handed_off(
    harness: Harness,
) -> None:
    await with_kb(harness)
    harness.use_model(OfflineProvider())

    await harness.answer("Can I pay in bitcoin?", contact="Ann")
    outcome = await harness.answer("zzqx vlorp", contact="Bob")

    [draft] = await harness.rows(Draft)
    assert draft.reason == "low_confidence" and draft.citations
    assert outcome.status == "handed_off"
    assert customer_texts(harness)[0] == HOLDING
