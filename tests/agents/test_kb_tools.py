"""search_kb and tag_conversation, called by a model through the real loop and executor."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.definition import TEMPLATES_DIR
from agents.kb import import_paths
from agents.messages import ToolResult
from bot.core.errors import ConfigurationError
from bot.store.models import AuditEvent, Conversation
from tests.support.harness import Harness, agent_definition
from tests.support.models import ScriptedModel, call, turn

KB_AGENT: dict[str, Any] = {
    "tools": ["search_kb", "tag_conversation", "send_message", "handoff_to_human"],
    "categories": ["how-to", "billing", "bug", "account"],
}


def seen(model: ScriptedModel) -> list[dict[str, Any]]:
    """The tool results the model was shown, in order, as JSON."""
    results = [m for m in model.requests[-1].messages if isinstance(m, ToolResult)]
    return [json.loads(r.content) for r in results]


async def test_search_kb_shows_the_model_passages_with_their_article_and_score(
    harness: Harness,
) -> None:
    await import_paths(harness.db, [TEMPLATES_DIR / "kb"])
    await harness.add_agent(**KB_AGENT)
    model = ScriptedModel(
        turn("", call("search_kb", {"query": "I forgot my password", "limit": 2})),
        turn("", call("finish")),
    )
    harness.use_model(model)

    outcome = await harness.answer("I forgot my password")

    assert outcome.status == "finished"
    [result] = seen(model)
    [best, second] = result["hits"]
    assert set(best) == {"article_id", "title", "url", "heading", "passage", "score"}
    assert (best["title"], best["url"]) == (
        "Reset your password",
        "https://help.parrotdesk.example/password",
    )
    assert "Forgot password?" in best["passage"] and 0 < best["score"] <= 1
    assert second["title"] and 0 < second["score"] <= 1
    # The run's audit holds what was found: the citation check of a reply can rely on it.
    [audited] = [
        e
        for e in await harness.rows(AuditEvent, AuditEvent.kind == "tool_call")
        if e.payload["tool"] == "search_kb"
    ]
    assert audited.payload["result"]["hits"][0]["article_id"] == best["article_id"]


async def test_search_kb_with_nothing_found_says_not_to_guess(harness: Harness) -> None:
    await harness.add_agent(**KB_AGENT)  # an empty knowledge base
    model = ScriptedModel(
        turn("", call("search_kb", {"query": "colour of the sky"})), turn("", call("finish"))
    )
    harness.use_model(model)
    await harness.answer("what colour is the sky?")
    assert seen(model) == [
        {"hits": [], "note": "Nothing in the knowledge base matches. Do not guess an answer."}
    ]


async def test_tag_conversation_stores_an_allowed_category_and_audits_it(harness: Harness) -> None:
    await harness.add_agent(**KB_AGENT)
    model = ScriptedModel(
        turn("", call("tag_conversation", {"category": "Billing "}, id="1")),
        turn("", call("tag_conversation", {"category": "account"}, id="2")),
        turn("", call("finish")),
    )
    harness.use_model(model)

    await harness.answer("my invoice is wrong, and I cannot log in")

    assert seen(model) == [
        {"category": "billing", "previous": None},
        {"category": "account", "previous": "billing"},
    ]
    [conversation] = await harness.rows(Conversation)
    assert conversation.category == "account"
    tagged = await harness.rows(AuditEvent, AuditEvent.kind == "conversation_tagged")
    assert [(e.payload, e.actor, e.conversation_id) for e in tagged] == [
        ({"category": "billing", "previous": None}, "agent:tester", conversation.id),
        ({"category": "account", "previous": "billing"}, "agent:tester", conversation.id),
    ]
    assert all(e.run_id for e in tagged)


async def test_a_category_not_in_the_definition_is_refused(harness: Harness) -> None:
    await harness.add_agent(**KB_AGENT)
    model = ScriptedModel(
        turn("", call("tag_conversation", {"category": "sales"})), turn("", call("finish"))
    )
    harness.use_model(model)

    await harness.answer("hello")

    [result] = seen(model)
    assert result["error"]["type"] == "unknown_category"
    assert "how-to" in result["error"]["message"]
    [conversation] = await harness.rows(Conversation)
    assert conversation.category is None
    assert await harness.rows(AuditEvent, AuditEvent.kind == "conversation_tagged") == []


def test_tag_conversation_needs_categories_and_they_must_be_slugs() -> None:
    with pytest.raises(ConfigurationError, match="tag_conversation tool needs categories"):
        agent_definition(tools=["tag_conversation"])
    with pytest.raises(ConfigurationError, match="categories must be unique"):
        agent_definition(tools=["tag_conversation"], categories=["bug", "bug"])
    with pytest.raises(ConfigurationError, match=r"field categories\.0"):
        agent_definition(categories=["Not A Slug"])
    definition = agent_definition(tools=["search_kb"], categories=["how-to"])
    assert definition.categories == ["how-to"]
