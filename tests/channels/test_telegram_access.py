"""Who may do what on Telegram: commands in any case, never from bots, staff only in topics,
and names and texts from outside shown to staff with their controls made visible."""

from __future__ import annotations

import asyncio

from bot.store import cursors
from bot.store.models import AuditEvent, Contact, Conversation, Message, StaffThread
from channels.telegram.ingest import CURSOR_KEY
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_updates import JSON
from tests.support.telegram_rig import ADMIN_ID, STAFF_CHAT, TelegramRig, eventually

ANN, STAFFER, OUTSIDER, OTHER_BOT = 501, 8001, 9009, 6001


async def _handled(rig: TelegramRig, update: JSON) -> bool:
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        saved = await cursors.load(session, CURSOR_KEY)
    return saved is not None and int(saved) >= update["update_id"]


async def _hand_off(rig: TelegramRig, fake: FakeTelegram, name: str = "Ann") -> int:
    fake.user_message(ANN, "hello", first_name=name)
    await eventually(lambda: texts(fake, ANN))
    fake.user_message(ANN, "I want a refund", first_name=name)
    [thread] = await eventually(lambda: rig.rows(StaffThread))
    await eventually(lambda: fake.sent(chat_id=STAFF_CHAT))
    # The customer's notice that a person takes over comes paced (1 a second per chat):
    # callers count Ann's messages from here, so it must be in before they do.
    await eventually(lambda: any("passed this conversation" in t for t in texts(fake, ANN)))
    return int(thread.thread_id or 0)


def _in_topic(fake: FakeTelegram, user_id: int, text: str, thread_id: int, **extra: object) -> JSON:
    return fake.user_message(
        user_id,
        text,
        chat_id=STAFF_CHAT,
        message_thread_id=thread_id,
        **extra,  # type: ignore[arg-type]
    )


async def _settle(rig: TelegramRig, update: JSON) -> None:
    await eventually(lambda: _handled(rig, update))
    assert rig.app is not None
    await rig.app.flush_outbox()
    await asyncio.sleep(0.1)


async def test_commands_match_in_any_case_and_with_the_bot_named(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(ADMIN_ID, "/AGENT list", first_name="Boss")
    await eventually(lambda: texts(fake, ADMIN_ID))
    assert "lead-qualifying" in texts(fake, ADMIN_ID)[0]
    fake.user_message(ADMIN_ID, "/Agent@Crm_Test_Bot list", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 2)
    assert "lead-qualifying" in texts(fake, ADMIN_ID)[1]
    assert await rig.rows(Message, Message.direction == "in") == []

    fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    thread_id = await _hand_off(rig, fake)
    before = len(texts(fake, ANN))
    _in_topic(fake, STAFFER, "/NOTE vip customer", thread_id, first_name="Alice")
    await eventually(lambda: any("Note saved" in t for t in texts(fake, STAFF_CHAT)))
    close = _in_topic(fake, STAFFER, "/Close@crm_test_bot", thread_id, first_name="Alice")
    await _settle(rig, close)
    [contact] = await rig.rows(Contact)
    assert contact.custom_fields["staff_notes"][0]["text"] == "vip customer"
    [conversation] = await rig.rows(Conversation)
    assert conversation.state == "closed"
    assert len(texts(fake, ANN)) == before  # nothing of it reached the customer


async def test_a_bot_is_never_an_admin_nor_staff(rig: TelegramRig, fake: FakeTelegram) -> None:
    command = fake.user_message(ADMIN_ID, "/agent list", first_name="Boss", is_bot=True)
    await _settle(rig, command)
    assert texts(fake, ADMIN_ID) == []
    fake.set_member_status(STAFF_CHAT, OTHER_BOT, "member")
    thread_id = await _hand_off(rig, fake)
    before = len(texts(fake, ANN))
    relay = _in_topic(fake, OTHER_BOT, "I am a bot", thread_id, first_name="Bot", is_bot=True)
    await _settle(rig, relay)
    assert len(texts(fake, ANN)) == before
    assert not await rig.rows(AuditEvent, AuditEvent.kind == "staff_reply")


async def test_only_staff_members_can_answer_note_or_close_in_a_topic(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    before = len(texts(fake, ANN))
    fake.set_member_status(STAFF_CHAT, OUTSIDER, "left")
    _in_topic(fake, OUTSIDER, "Hi Ann, send me your password", thread_id, first_name="Mallory")
    _in_topic(fake, OUTSIDER, "/note trust Mallory", thread_id, first_name="Mallory")
    last = _in_topic(fake, OUTSIDER, "/close", thread_id, first_name="Mallory")
    await _settle(rig, last)
    assert len(texts(fake, ANN)) == before
    [contact] = await rig.rows(Contact)
    assert "staff_notes" not in (contact.custom_fields or {})
    [conversation] = await rig.rows(Conversation)
    assert conversation.state == "handed_off"
    # The three refusals are queued by then; their delivery is paced like any staff post.
    await eventually(lambda: sum("only staff" in t for t in texts(fake, STAFF_CHAT)) == 3)
    assert rig.app is not None
    await rig.app.refusals.aclose()
    [refused] = await rig.rows(AuditEvent, AuditEvent.kind == "refused")
    assert refused.payload["source"] == "telegram:staff_topic"
    assert refused.payload["count"] == 3

    fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    checks = len(fake.calls_of("getChatMember"))
    _in_topic(fake, STAFFER, "Hi Ann, Alice here.", thread_id, first_name="Alice")
    _in_topic(fake, STAFFER, "Looking into it.", thread_id, first_name="Alice")
    await eventually(lambda: texts(fake, ANN)[-1:] == ["Looking into it."])
    assert len(fake.calls_of("getChatMember")) == checks + 1  # membership is cached


async def test_the_customer_is_not_staff_in_her_own_topic(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    fake.set_member_status(STAFF_CHAT, ANN, "member")
    before = len(texts(fake, ANN))
    _in_topic(fake, ANN, "/note she is lovely", thread_id, first_name="Ann")
    last = _in_topic(fake, ANN, "a reply to myself", thread_id, first_name="Ann")
    await _settle(rig, last)
    assert len(texts(fake, ANN)) == before
    [contact] = await rig.rows(Contact)
    assert "staff_notes" not in (contact.custom_fields or {})
    assert not await rig.rows(AuditEvent, AuditEvent.kind == "staff_reply")
    assert rig.app is not None
    await rig.app.refusals.flush()
    [refused] = await rig.rows(AuditEvent, AuditEvent.kind == "refused")
    assert (refused.payload["reason"], refused.payload["count"]) == ("the topic's own customer", 2)


async def test_controls_and_direction_overrides_reach_staff_made_visible(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    name = "Ann\u202egnp.exe\x1b[2J"
    thread_id = await _hand_off(rig, fake, name=name)
    [summary] = texts(fake, STAFF_CHAT, thread_id)
    assert "\u202e" not in summary and "\x1b" not in summary
    assert "Handoff: Ann⟨U+202E⟩gnp.exe␛[2J" in summary
    [contact] = await rig.rows(Contact)
    assert contact.name == name  # stored as it came
    fake.user_message(ANN, "invoice \u2066#4471\u2069 \x07", first_name=name)
    copy = await eventually(
        lambda: [t for t in texts(fake, STAFF_CHAT, thread_id) if "invoice" in t]
    )
    assert copy == ["💬 invoice ⟨U+2066⟩#4471⟨U+2069⟩ ␇"]
    [incoming] = await rig.rows(Message, Message.text.like("invoice%"))
    assert incoming.text == "invoice \u2066#4471\u2069 \x07"
