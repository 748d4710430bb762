"""The staff desk: what staff are told at handoff, and what their actions do."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.core.hours import BusinessHours
from bot.desk import staff as staff_desk
from bot.desk.handoff import customer_notice
from bot.desk.staff import (
    StaffMember,
    add_note,
    decide,
    reply_to_customer,
    set_conversation_state,
    topic_title,
)
from bot.store.inbox import pending_messages
from bot.store.models import AuditEvent, Contact, Conversation, Deal, OutboxItem
from channels.base import DeliveryResult, Failed
from tests.support.harness import Harness, RecordingChannel
from tests.support.models import ScriptedModel, call, turn

ALICE = StaffMember("telegram:42", "Alice")


async def _staff_posts(h: Harness) -> list[OutboxItem]:
    return await h.rows(OutboxItem, OutboxItem.channel == "staff")


async def _to_customer(h: Harness) -> list[OutboxItem]:
    return await h.rows(OutboxItem, OutboxItem.channel == "console")


async def test_handoff_posts_a_summary_for_staff(harness: Harness) -> None:
    harness.use_model(ScriptedModel(turn("Happy to help. What do you need?")))
    await harness.answer("hi, I'm looking at CRMs")
    await harness.answer("I want a refund for my last invoice")
    [summary] = await _staff_posts(harness)
    assert summary.meta["kind"] == "summary"
    assert summary.recipient == f"contact:{summary.contact_id}"
    assert "Ann" in summary.text
    assert "Channel: console" in summary.text
    assert "trigger word 'refund'" in summary.text
    assert "customer: I want a refund for my last invoice" in summary.text
    assert "agent: Happy to help. What do you need?" in summary.text
    assert summary.status == "sent"


async def test_customer_messages_during_handoff_are_copied_to_staff(harness: Harness) -> None:
    harness.use_model(ScriptedModel())
    await harness.answer("urgent: our account is locked")
    await harness.answer("hello?? anyone there")
    posts = await _staff_posts(harness)
    assert [p.meta["kind"] for p in posts] == ["summary", "copy"]
    assert "hello?? anyone there" in posts[1].text
    customer = [i.text for i in await _to_customer(harness)]
    assert len(customer) == 1  # only the handoff notice; the agent stays silent


async def test_lines_written_while_staff_posts_are_backed_up_share_one_post(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staff group takes 20 posts a minute across every topic: under many handoffs at
    once, a customer's lines join their copy that still waits instead of taking a post each."""
    monkeypatch.setattr(staff_desk, "BACKED_UP_SECONDS", 0.0)  # every waiting post has waited
    harness.use_model(ScriptedModel())
    await harness.answer("urgent: our account is locked")
    for text in ("hello??", "anyone there", "this is urgent"):  # nothing is delivered meanwhile
        conversation_id = await harness.receive(text)
        async with harness.db.reading() as session:
            pending = await pending_messages(session, conversation_id)
        await harness.app.runner.handle_inbound(conversation_id, pending)
    posts = await _staff_posts(harness)
    assert [p.meta["kind"] for p in posts] == ["summary", "copy"]
    assert posts[1].text == "💬 hello??\n💬 anyone there\n💬 this is urgent"
    await harness.app.flush_outbox()
    assert [p.status for p in await _staff_posts(harness)] == ["sent", "sent"]


async def test_staff_reply_reaches_the_customer_once_and_is_audited(harness: Harness) -> None:
    harness.use_model(ScriptedModel())
    await harness.answer("I need a human")
    [contact] = await harness.rows(Contact)
    for _ in range(2):  # the same staff message delivered twice (a replayed update)
        async with harness.db.transaction() as session:
            await reply_to_customer(
                session,
                harness.app.audit,
                contact_id=contact.id,
                text="Hi Ann, Alice here.",
                key="staff:-100:7",
                staff=ALICE,
            )
    await harness.app.flush_outbox()
    replies = [i for i in await _to_customer(harness) if i.author == "staff"]
    assert [r.text for r in replies] == ["Hi Ann, Alice here."]
    assert harness.channel.delivered[-1] == ("Ann", "Hi Ann, Alice here.")
    [event] = await harness.rows(AuditEvent, AuditEvent.kind == "staff_reply")
    assert event.actor == "telegram:42"


async def test_note_never_reaches_the_customer(harness: Harness) -> None:
    harness.use_model(ScriptedModel())
    await harness.answer("manager please")
    [contact] = await harness.rows(Contact)
    before = len(await _to_customer(harness))
    async with harness.db.transaction() as session:
        await add_note(
            session, harness.app.audit, contact_id=contact.id, text="VIP, call back", staff=ALICE
        )
    assert len(await _to_customer(harness)) == before
    [contact] = await harness.rows(Contact)
    assert contact.custom_fields["staff_notes"][0]["text"] == "VIP, call back"


async def test_resume_gives_the_conversation_back_to_the_agent(harness: Harness) -> None:
    harness.use_model(ScriptedModel(turn("Welcome back! How can I help?")))
    await harness.answer("escalate this")
    [contact] = await harness.rows(Contact)
    async with harness.db.transaction() as session:
        await set_conversation_state(
            session, harness.app.audit, contact_id=contact.id, state="bot", staff=ALICE
        )
    outcome = await harness.answer("thanks, one more question")
    assert outcome.status == "finished"
    assert harness.channel.delivered[-1][1] == "Welcome back! How can I help?"


async def test_close_ends_it_and_the_next_message_starts_afresh(harness: Harness) -> None:
    harness.use_model(ScriptedModel(turn("Hello again!")))
    first = await harness.receive("legal question")
    await harness.answer("x")
    [contact] = await harness.rows(Contact)
    async with harness.db.transaction() as session:
        await set_conversation_state(
            session, harness.app.audit, contact_id=contact.id, state="closed", staff=ALICE
        )
    second = await harness.receive("new topic")
    assert second != first
    async with harness.db.transaction() as session:
        states = await session.execute(select(Conversation.state).order_by(Conversation.id))
        assert list(states.scalars()) == ["closed", "bot"]


async def test_confirmation_is_posted_and_approval_carries_it_out_once(harness: Harness) -> None:
    harness.use_model(
        ScriptedModel(
            turn("", call("update_deal_stage", {"stage": "qualified"}, id="1")),
            turn("", call("update_deal_stage", {"stage": "lost"}, id="2")),
            turn("", call("finish")),
        )
    )
    await harness.answer("we went with another vendor")
    [post] = await _staff_posts(harness)
    assert post.meta["kind"] == "confirmation"
    assert "lost" in post.text
    confirmation_id = post.meta["confirmation_id"]
    async with harness.db.transaction() as session:
        first = await decide(
            session, harness.app.audit, confirmation_id=confirmation_id, approve=True, staff=ALICE
        )
        second = await decide(
            session, harness.app.audit, confirmation_id=confirmation_id, approve=False, staff=ALICE
        )
    assert (first, second) == ("approved", "already approved by Alice")
    [deal] = await harness.rows(Deal)
    assert deal.stage == "lost"


def test_customer_is_told_when_a_person_will_answer_outside_business_hours() -> None:
    hours = BusinessHours("mon-fri 09:00-17:00", "Europe/Berlin")
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert hours.describe_next_opening(saturday) == "Monday at 09:00 CET"
    assert not hours.is_open(saturday)
    assert hours.is_open(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    assert "as soon as possible" in customer_notice(None)


class _RefusingChannel(RecordingChannel):
    async def deliver(self, item: object) -> DeliveryResult:
        return Failed("bad request: chat not found", unreachable=True)


async def test_a_failed_delivery_alerts_staff_and_the_agent_sees_it(harness: Harness) -> None:
    harness.app.outbox_workers["console"].channel = _RefusingChannel()
    model = ScriptedModel(turn("Hello Ann!"), turn("", call("get_contact")), turn("Still there?"))
    harness.use_model(model)
    await harness.answer("hi")
    [alert] = await _staff_posts(harness)
    assert alert.meta["kind"] == "alert"
    assert "was not delivered" in alert.text
    assert "Hello Ann!" in alert.text
    await harness.answer("hello?")
    seen = str(model.requests[1].messages)
    assert "[NOT DELIVERED to the contact] Hello Ann!" in seen
    assert '"unreachable": true' in str(model.requests[2].messages)


def test_a_topic_title_shows_controls_and_fits_telegram() -> None:
    contact = Contact(id=7, name="Ann\u202egnp.exe\n" + "x" * 200)
    title = topic_title(contact)
    assert title.startswith("Ann⟨U+202E⟩gnp.exe⏎x")
    assert title.endswith(" #7") and len(title) <= 128
    assert topic_title(Contact(id=8, name="")) == "Contact 8 #8"
