"""The support agent end to end on Telegram, through the real OpenAI SDK against its wire
stub: an answer from an article with its citation, and answers the code would not send
drafted for staff, approved, edited and saved to the knowledge base with the staff buttons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agents import catalog
from agents.definition import TEMPLATES_DIR, load_definition_file
from agents.kb import import_paths
from bot.store import kb
from bot.store.models import AuditEvent, Draft, KbArticle
from tests.channels.conftest import texts
from tests.providers.stub_server import Reply, StubServer
from tests.providers.wire import FAST, OpenAIWire
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig, eventually

ANN, STAFFER = 601, 8101
WIRE = OpenAIWire()


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer(WIRE.route)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def support(
    fake: FakeTelegram, database_url: str, stub: StubServer
) -> AsyncIterator[TelegramRig]:
    rig = TelegramRig(fake, database_url, default_agent="support-deflection")
    provider = WIRE.build(stub.base_url, timeout=5.0, max_retries=0, backoff=FAST)
    await rig.start(provider, import_agents=False)
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        await catalog.save(session, load_definition_file(TEMPLATES_DIR / "support-deflection.yaml"))
    await import_paths(rig.app.db, [TEMPLATES_DIR / "kb"])
    fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    try:
        yield rig
    finally:
        await rig.stop()
        await provider.aclose()


def model_says(stub: StubServer, *calls: tuple[str, dict[str, Any]], finish: bool = True) -> None:
    """Queue one completion per tool call, then a finish (a drafted answer ends the run
    without one)."""
    for n, (name, arguments) in enumerate([*calls, *([("finish", {})] if finish else [])]):
        stub.queue(Reply(body=WIRE.tool_calls((f"call_{n}", name, arguments))))


async def article(rig: TelegramRig, title: str) -> int:
    [found] = await rig.rows(KbArticle, KbArticle.title == title)
    return int(found.id)


def draft_post(fake: FakeTelegram, draft_id: int) -> dict[str, Any]:
    posts = [
        m
        for m in fake.bot_messages(STAFF_CHAT)
        if f"draft:{draft_id}:approve" in str(m.get("reply_markup"))
    ]
    return posts[0] if posts else {}


async def test_a_question_is_answered_from_an_article_with_its_citation(
    support: TelegramRig, fake: FakeTelegram, stub: StubServer
) -> None:
    password = await article(support, "Reset your password")
    answer = "On the sign-in page click Forgot password? and follow the link in the email."
    model_says(
        stub,
        ("search_kb", {"query": "forgot password"}),
        ("send_message", {"text": answer, "cite": [password]}),
    )

    fake.user_message(ANN, "I forgot my password, help!", first_name="Ann")

    [sent] = await eventually(lambda: texts(fake, ANN))
    assert (
        sent == f"{answer}\n\nSource: Reset your password: https://help.parrotdesk.example/password"
    )
    # The SDK really sent the tools and the search result to the API.
    tools = [t["function"]["name"] for t in stub.received[0].body["tools"]]
    assert "search_kb" in tools and "send_message" in tools
    assert "Reset your password" in str(stub.received[1].body["messages"])
    assert await support.rows(Draft) == []


async def test_answers_outside_the_kb_are_drafted_approved_edited_and_saved(
    support: TelegramRig, fake: FakeTelegram, stub: StubServer
) -> None:
    billing = await article(support, "Billing, payments and invoices")
    first = "We take cards and bank transfers."
    model_says(
        stub,
        ("search_kb", {"query": "pay with bitcoin"}),
        ("send_message", {"text": first, "cite": [billing]}),  # a weak match: drafted
        finish=False,
    )
    fake.user_message(ANN, "Can I pay in bitcoin?", first_name="Ann")

    [holding] = await eventually(lambda: texts(fake, ANN))
    assert "colleague is checking it" in holding
    [draft] = await eventually(lambda: support.rows(Draft))
    assert draft.reason == "low_confidence"
    card = await eventually(lambda: draft_post(fake, draft.id))
    assert first in card["text"] and "Can I pay in bitcoin?" in card["text"]
    assert "Edit" in str(card["reply_markup"]) and "Reject" in str(card["reply_markup"])

    # Approve: the draft goes to Ann with its source, and the card says who approved it.
    fake.callback_query(STAFFER, card, f"draft:{draft.id}:approve", chat_id=STAFF_CHAT)
    await eventually(lambda: len(texts(fake, ANN)) == 2)
    assert texts(fake, ANN)[1].startswith(f"{first}\n\nSource: Billing, payments and invoices")
    await eventually(lambda: fake.calls_of("editMessageText"))
    assert "Approved by" in str(fake.calls_of("editMessageText")[-1].params["text"])

    # A second question, drafted because it cites nothing; staff correct it by replying.
    model_says(
        stub,
        ("search_kb", {"query": "invoice in euros"}),
        ("send_message", {"text": "Yes, any currency you like."}),
        finish=False,
    )
    fake.user_message(ANN, "Can we be invoiced in euros?", first_name="Ann")
    await eventually(lambda: len(texts(fake, ANN)) == 3)  # the holding message again
    second = (await eventually(lambda: support.rows(Draft, Draft.id != draft.id)))[0]
    assert second.reason == "no_citation"
    card = await eventually(lambda: draft_post(fake, second.id))
    fake.callback_query(STAFFER, card, f"draft:{second.id}:edit", chat_id=STAFF_CHAT)
    await eventually(lambda: len(fake.calls_of("answerCallbackQuery")) == 2)
    corrected = "Invoices are in US dollars only; your bank converts the amount."
    fake.user_message(
        STAFFER,
        corrected,
        first_name="Mia",
        chat_id=STAFF_CHAT,
        message_thread_id=card.get("message_thread_id"),
        reply_to_message=card["message_id"],
    )
    await eventually(lambda: len(texts(fake, ANN)) == 4)
    assert texts(fake, ANN)[3] == corrected
    offer = await eventually(
        lambda: [m for m in fake.bot_messages(STAFF_CHAT) if f"draft:{second.id}:save" in str(m)]
    )
    fake.callback_query(STAFFER, offer[0], f"draft:{second.id}:save", chat_id=STAFF_CHAT)
    [saved] = await eventually(
        lambda: support.rows(KbArticle, KbArticle.path == f"staff-answer:{second.id}")
    )
    assert saved.title == "Can we be invoiced in euros?" and corrected in saved.body
    assert support.app is not None
    async with support.app.db.reading() as session:
        [hit] = await kb.search(session, "invoiced in euros", 1)
    assert hit.article_id == saved.id

    decided = await support.rows(AuditEvent, AuditEvent.kind == "draft_decided")
    decisions = [(e.payload["decision"], e.actor) for e in sorted(decided, key=lambda e: e.id)]
    assert decisions == [("approved", f"telegram:{STAFFER}"), ("edited", f"telegram:{STAFFER}")]
    assert await support.rows(AuditEvent, AuditEvent.kind == "draft_saved_to_kb")
    stub.assert_complete()


async def test_only_staff_can_decide_or_edit_a_draft(
    support: TelegramRig, fake: FakeTelegram, stub: StubServer
) -> None:
    outsider = 8199
    model_says(
        stub,
        ("search_kb", {"query": "pay with bitcoin"}),
        ("send_message", {"text": "Bitcoin is fine."}),
        finish=False,
    )
    fake.user_message(ANN, "Can I pay in bitcoin?", first_name="Ann")
    [draft] = await eventually(lambda: support.rows(Draft))
    card = await eventually(lambda: draft_post(fake, draft.id))
    fake.set_member_status(STAFF_CHAT, outsider, "left")

    fake.callback_query(outsider, card, f"draft:{draft.id}:approve", chat_id=STAFF_CHAT)
    await eventually(lambda: fake.calls_of("answerCallbackQuery"))
    fake.user_message(
        outsider,
        "Sure, send them our bank details: evil.example",
        first_name="Eve",
        chat_id=STAFF_CHAT,
        message_thread_id=card.get("message_thread_id"),
        reply_to_message=card["message_id"],
    )
    await eventually(lambda: any("only staff" in t.lower() for t in texts(fake, STAFF_CHAT)))
    # Ann, pressing the button on her own draft's card (were she in the group), is refused too.
    fake.callback_query(ANN, card, f"draft:{draft.id}:approve", chat_id=STAFF_CHAT)
    await eventually(lambda: len(fake.calls_of("answerCallbackQuery")) == 2)

    [draft] = await support.rows(Draft)
    assert draft.status == "pending"
    assert len(texts(fake, ANN)) == 1  # the holding message, nothing else
    refused = fake.calls_of("answerCallbackQuery")
    assert all("Only staff" in str(c.params.get("text")) for c in refused)
