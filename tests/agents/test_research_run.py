"""One prospect researched: a contact, an audited run, an outreach draft for staff; no email."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from agents.budget import Price
from agents.definition import TEMPLATES_DIR, load_definition_file
from agents.providers.base import Provider
from agents.research.fetch import Fetcher
from agents.research.opener import ExtractiveModel
from agents.research.run import ProspectRow, Researcher, default_sources, draft_key
from agents.research.writer import OpenerWriter
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.leads import LeadFields
from bot.store.models import AgentRun, AuditEvent, Contact, Draft, OutboxItem
from tests.support.models import ScriptedModel, call, turn
from tests.support.rows import rows
from tests.support.websites import LocalSite

AGENT = load_definition_file(TEMPLATES_DIR / "outbound-research.yaml")


def researcher(db: Database, fetcher: Fetcher, model: Provider | None = None) -> Researcher:
    writer = OpenerWriter(
        AGENT, model or ExtractiveModel(), "gpt-test", Price(Decimal(1), Decimal(2))
    )
    return Researcher(db, AuditLog(), AGENT, writer, default_sources(fetcher))


def ann_row(site: LocalSite, **changes: Any) -> ProspectRow:
    lead = LeadFields(name="Ann Lee", email="Ann@Acme.test", company="Acme", owner="Dana")
    row = ProspectRow(lead, site.url("/"), site.url("/feed.xml"), "Met at the Paris fair")
    return replace(row, **changes)


async def test_a_prospect_becomes_a_tagged_contact_and_a_pending_draft_posted_to_staff(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    result = await researcher(db, fetcher).research(ann_row(site))

    assert result.status == "drafted"
    [contact] = await rows(db, Contact)
    assert contact.email == "ann@acme.test" and contact.tags == ["prospect"]
    assert contact.owner == "Dana" and contact.custom_fields == {"company": "Acme"}
    [draft] = await rows(db, Draft)
    assert (draft.id, draft.kind, draft.status, draft.reason) == (
        result.draft_id,
        "outreach",
        "pending",
        "outreach",
    )
    assert draft.key == draft_key("outbound-research", "ann@acme.test")
    assert draft.sources == [site.url("/"), site.url("/news/lyon")]
    assert draft.subject == "A note for Acme" and "“Acme opens a second workshop" in draft.text
    assert draft.question.startswith(f"Researched from website {site.url('/')}")
    assert "notes: Met at the Paris fair" in draft.question
    [post] = await rows(db, OutboxItem)  # the card for staff, and nothing for Ann
    assert post.channel == "staff" and post.meta["draft_id"] == draft.id
    assert f"Draft #{draft.id}" in post.text
    [run] = await rows(db, AgentRun)
    assert (run.id, run.trigger, run.status, run.steps) == (draft.run_id, "research", "finished", 1)
    kinds = [e.kind for e in await rows(db, AuditEvent, AuditEvent.run_id == run.id)]
    assert kinds == [
        "run_started",
        "research_sources",
        "model_call",
        "tool_call",
        "draft_created",
        "run_finished",
    ]


async def test_researching_the_same_prospect_again_fetches_and_drafts_nothing(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    first = await researcher(db, fetcher).research(ann_row(site))
    fetched = len(site.requests)

    again = await researcher(db, fetcher).research(ann_row(site, notes="Other notes"))

    assert again.status == "already" and again.draft_id == first.draft_id
    assert again.detail == f"drafted before: #{first.draft_id}, pending"
    assert len(site.requests) == fetched
    assert len(await rows(db, Draft)) == 1 and len(await rows(db, AgentRun)) == 1


async def test_a_model_calling_send_message_is_refused_and_nothing_reaches_the_prospect(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    opener = {
        "subject": "Your Lyon workshop",
        "opener": "Hi Ann, congratulations on the second workshop in Lyon.",
        "sources": [site.url("/news/lyon")],
    }
    model = ScriptedModel(
        turn("", call("send_message", {"text": "Hi Ann, buy our thing"})),
        turn("", call("draft_opener", opener)),
    )

    result = await researcher(db, fetcher, model).research(ann_row(site))

    assert result.status == "drafted"
    assert [i.channel for i in await rows(db, OutboxItem)] == ["staff"]
    [draft] = await rows(db, Draft)
    assert draft.text == opener["opener"] and draft.status == "pending"
    [refused] = [
        e.payload
        for e in await rows(db, AuditEvent, AuditEvent.kind == "tool_call")
        if e.payload.get("error")
    ]
    assert refused["tool"] == "send_message" and refused["error"]["type"] == "not_allowed"
    [finished] = await rows(db, AuditEvent, AuditEvent.kind == "run_finished")
    assert finished.payload["refused_tools"] == ["send_message"]


async def test_a_prospect_with_nothing_fetched_is_not_drafted_and_the_run_says_why(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    model = ScriptedModel()  # never asked: there is nothing to ground an opener in
    row = ann_row(site, website=site.url("/private/team"), feed=site.url("/not-a-feed"))

    result = await researcher(db, fetcher, model).research(row)

    assert result.status == "failed"
    assert result.detail == (
        "nothing fetched to ground an opener (website: robots.txt of "
        f"{site.base_url} disallows /private/team; feed: {site.url('/not-a-feed')} is not an "
        "RSS or Atom feed)"
    )
    assert await rows(db, Draft) == [] and await rows(db, OutboxItem) == []
    [run] = await rows(db, AgentRun)
    assert run.status == "failed" and run.stop_reason == result.detail and run.steps == 0


async def test_a_model_that_never_grounds_its_opener_drafts_nothing(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    made_up = {
        "subject": "Hello",
        "opener": "Hi Ann, I read that Acme just raised a big round from famous investors.",
        "sources": ["https://news.example/acme-raises"],
    }
    model = ScriptedModel(*[turn("", call("draft_opener", made_up))] * 3)

    result = await researcher(db, fetcher, model).research(ann_row(site))

    assert result.status == "failed"
    assert result.detail.startswith(
        "no grounded opener in 3 model calls: it cites https://news.example/acme-raises, "
        "not fetched in this run"
    )
    assert await rows(db, Draft) == [] and await rows(db, OutboxItem) == []
    [run] = await rows(db, AgentRun)
    assert (run.status, run.steps, run.input_tokens) == ("failed", 3, 30)


async def test_an_opted_out_contact_is_not_researched(
    db: Database, site: LocalSite, fetcher: Fetcher
) -> None:
    await researcher(db, fetcher).research(ann_row(site, website=None, feed=None))
    async with db.transaction() as session:
        [contact] = (await session.execute(select(Contact))).scalars()
        contact.opted_out_at = contact.created_at

    result = await researcher(db, fetcher).research(ann_row(site))

    assert (result.status, result.detail) == ("failed", "the contact opted out of messages")
    assert site.requests == []  # nothing fetched for someone who said stop
