"""Deciding drafts on the staff desk: approve, edit (and save to the knowledge base), reject,
each once and audited."""

from __future__ import annotations

from typing import Any

from bot.desk.drafts import decide_draft, edit_draft, save_to_kb
from bot.desk.staff import StaffMember
from bot.store import kb
from bot.store.models import AuditEvent, Draft, KbArticle, OutboxItem
from tests.agents.test_grounding import HOLDING, article_id, reply, search, with_kb
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, turn

MIA = StaffMember("telegram:8001", "Mia")
LEO = StaffMember("telegram:8002", "Leo")


async def drafted(harness: Harness, question: str, answer: str, cite: list[int]) -> Draft:
    harness.use_model(ScriptedModel(search(question), reply(answer, cite)))
    await harness.answer(question)
    [draft] = await harness.rows(Draft, Draft.question == question)
    return draft


async def to_customer(harness: Harness) -> list[str]:
    items = await harness.rows(OutboxItem, OutboxItem.channel == "console")
    return [item.text for item in sorted(items, key=lambda i: i.id)]


async def decide(harness: Harness, **kwargs: Any) -> str:
    async with harness.db.transaction() as session:
        return await decide_draft(session, harness.app.audit, **kwargs)


async def test_approve_sends_the_draft_with_its_sources_once(harness: Harness) -> None:
    await with_kb(harness)
    billing = await article_id(harness, "Billing, payments and invoices")
    draft = await drafted(
        harness, "Can I pay in bitcoin?", "We take cards and transfers.", [billing]
    )

    assert await decide(harness, draft_id=draft.id, approve=True, staff=MIA) == "approved"
    assert await decide(harness, draft_id=draft.id, approve=False, staff=LEO) == (
        "already approved by Mia"
    )

    sent = await to_customer(harness)
    assert sent[0] == HOLDING
    assert sent[1].startswith("We take cards and transfers.\n\nSource: Billing, payments")
    assert len(sent) == 2
    [decided] = await harness.rows(AuditEvent, AuditEvent.kind == "draft_decided")
    assert decided.actor == MIA.actor and decided.payload["decision"] == "approved"


async def test_reject_sends_nothing(harness: Harness) -> None:
    await with_kb(harness)
    draft = await drafted(harness, "Can I pay in bitcoin?", "Yes, bitcoin is fine.", [])

    assert await decide(harness, draft_id=draft.id, approve=False, staff=MIA) == "rejected"

    assert await to_customer(harness) == [HOLDING]
    [draft] = await harness.rows(Draft)
    assert (draft.status, draft.decided_by) == ("rejected", "Mia")


async def test_an_edit_is_sent_instead_and_can_be_saved_as_an_article(harness: Harness) -> None:
    await with_kb(harness)
    question = "Can I pay in bitcoin?"
    draft = await drafted(harness, question, "Yes, bitcoin is fine.", [])
    corrected = "We don't take cryptocurrencies; you can pay by card or by bank transfer."

    async with harness.db.transaction() as session:
        result = await edit_draft(
            session, harness.app.audit, draft_id=draft.id, text=corrected, staff=MIA
        )
    assert result == "edited"
    assert (await to_customer(harness))[-1] == corrected
    offers = [i for i in await harness.rows(OutboxItem) if (i.meta or {}).get("save_offer")]
    assert len(offers) == 1 and offers[0].meta["draft_id"] == draft.id

    async with harness.db.transaction() as session:
        saved = await save_to_kb(session, harness.app.audit, draft_id=draft.id, staff=MIA)
        again = await save_to_kb(session, harness.app.audit, draft_id=draft.id, staff=LEO)
    [article] = await harness.rows(KbArticle, KbArticle.path == f"staff-answer:{draft.id}")
    assert saved == f"saved as article {article.id}" and again.startswith("already saved")
    assert article.title == question and corrected in article.body
    async with harness.db.reading() as session:
        hits = await kb.search(session, "pay with bitcoin", 1)
    assert hits[0].article_id == article.id  # the next customer who asks finds it
    kinds = [e.kind for e in await harness.rows(AuditEvent) if e.kind.startswith("draft_")]
    assert kinds == ["draft_created", "draft_decided", "draft_saved_to_kb"]


async def test_an_approved_draft_cannot_be_edited_after_all(harness: Harness) -> None:
    await with_kb(harness)
    draft = await drafted(harness, "Can I pay in bitcoin?", "Yes, bitcoin is fine.", [])
    assert await decide(harness, draft_id=draft.id, approve=False, staff=LEO) == "rejected"
    async with harness.db.transaction() as session:
        result = await edit_draft(
            session, harness.app.audit, draft_id=draft.id, text="Card only.", staff=MIA
        )
    assert result == "already rejected by Leo"
    assert await to_customer(harness) == [HOLDING]


async def test_an_unknown_draft_is_said_so(harness: Harness) -> None:
    await harness.add_agent()
    harness.use_model(ScriptedModel(turn("hello")))
    assert await decide(harness, draft_id=12345, approve=True, staff=MIA) == "unknown draft"
