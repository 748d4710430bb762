"""Handoff to the staff group and back, end to end on Telegram."""

from __future__ import annotations

from bot.store import cursors
from bot.store.models import AuditEvent, Contact, Conversation, StaffPost, StaffThread
from channels.telegram.ingest import CURSOR_KEY
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig, eventually

ANN, STAFFER = 501, 8001


async def _hand_off(rig: TelegramRig, fake: FakeTelegram) -> int:
    """Ann says hello, then asks for a refund; returns her staff topic's thread id."""
    fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    fake.user_message(ANN, "hello", first_name="Ann")
    await eventually(lambda: texts(fake, ANN))
    fake.user_message(ANN, "I want a refund", first_name="Ann")
    await eventually(lambda: fake.calls_of("createForumTopic") and fake.sent(chat_id=STAFF_CHAT))
    # Her notice that a person takes over is paced behind her first reply (1 a second).
    await eventually(lambda: any("passed this conversation" in t for t in texts(fake, ANN)))
    [thread] = await rig.rows(StaffThread)
    return int(thread.thread_id or 0)


async def _handled_update(rig: TelegramRig, update_id: int) -> bool:
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        saved = await cursors.load(session, CURSOR_KEY)
    return saved is not None and int(saved) >= update_id


async def _thread_other_than(rig: TelegramRig, old: int) -> list[StaffThread]:
    threads = await rig.rows(StaffThread)
    return threads if threads and threads[0].thread_id != old else []


async def test_trigger_word_opens_a_topic_with_a_summary_and_staff_reply_reaches_prospect(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    [summary] = texts(fake, STAFF_CHAT, thread_id)
    assert "Handoff: Ann" in summary
    assert "trigger word 'refund'" in summary
    assert "customer: I want a refund" in summary
    [conversation] = await rig.rows(Conversation)
    assert conversation.state == "handed_off"
    await eventually(lambda: "colleague" in texts(fake, ANN)[-1])  # paced: 1/s per chat
    fake.user_message(
        STAFFER,
        "Hi Ann, Alice from billing here.",
        first_name="Alice",
        chat_id=STAFF_CHAT,
        message_thread_id=thread_id,
    )
    await eventually(lambda: texts(fake, ANN)[-1] == "Hi Ann, Alice from billing here.")
    [event] = await rig.rows(AuditEvent, AuditEvent.kind == "staff_reply")
    assert event.actor == f"telegram:{STAFFER}"


async def test_prospect_messages_during_handoff_are_copied_into_the_topic(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    await eventually(lambda: "colleague" in texts(fake, ANN)[-1])
    replies_before = len(texts(fake, ANN))
    fake.user_message(ANN, "my invoice number is 4471", first_name="Ann")
    await eventually(lambda: fake.calls_of("copyMessage"))
    [copy] = [c.params for c in fake.calls_of("copyMessage")]
    assert (int(copy["chat_id"]), int(copy["from_chat_id"]), int(copy["message_thread_id"])) == (
        STAFF_CHAT,
        ANN,
        thread_id,
    )
    assert len(texts(fake, ANN)) == replies_before  # the bot stays quiet during handoff


async def test_resume_returns_the_conversation_to_the_agent(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    fake.user_message(
        STAFFER, "/resume", first_name="Alice", chat_id=STAFF_CHAT, message_thread_id=thread_id
    )
    await eventually(lambda: any("Conversation handed back" in t for t in texts(fake, STAFF_CHAT)))
    [conversation] = await rig.rows(Conversation)
    assert conversation.state == "bot"
    before = len(texts(fake, ANN))
    fake.user_message(ANN, "thanks, sorted. next question", first_name="Ann")
    await eventually(lambda: len(texts(fake, ANN)) > before)


async def test_note_stays_internal_and_close_ends_the_conversation(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    before = len(texts(fake, ANN))
    fake.user_message(
        STAFFER,
        "/note refund approved by finance",
        first_name="Alice",
        chat_id=STAFF_CHAT,
        message_thread_id=thread_id,
    )
    await eventually(lambda: any("Note saved" in t for t in texts(fake, STAFF_CHAT)))
    fake.user_message(
        STAFFER, "/close", first_name="Alice", chat_id=STAFF_CHAT, message_thread_id=thread_id
    )
    await eventually(lambda: any("Conversation closed" in t for t in texts(fake, STAFF_CHAT)))
    assert len(texts(fake, ANN)) == before
    [contact] = await rig.rows(Contact)
    assert contact.custom_fields["staff_notes"][0]["text"] == "refund approved by finance"
    [conversation] = await rig.rows(Conversation)
    assert conversation.state == "closed"


async def test_a_deleted_topic_is_recreated_on_the_next_handoff(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    thread_id = await _hand_off(rig, fake)
    fake.user_message(
        STAFFER, "/resume", first_name="Alice", chat_id=STAFF_CHAT, message_thread_id=thread_id
    )
    await eventually(lambda: any("Conversation handed back" in t for t in texts(fake, STAFF_CHAT)))
    fake.delete_topic(STAFF_CHAT, thread_id)
    fake.user_message(ANN, "this is urgent now", first_name="Ann")
    await eventually(lambda: len(fake.calls_of("createForumTopic")) == 2)
    [thread] = await eventually(lambda: _thread_other_than(rig, thread_id))
    await eventually(lambda: texts(fake, STAFF_CHAT, thread.thread_id))
    assert "urgent" in texts(fake, STAFF_CHAT, thread.thread_id)[0]


async def test_in_a_group_without_topics_staff_answer_by_replying_to_the_summary(
    database_url: str,
) -> None:
    async with FakeTelegram() as fake:
        fake.add_supergroup(STAFF_CHAT, "Staff", is_forum=False)
        fake.set_member_status(STAFF_CHAT, STAFFER, "member")
        rig = TelegramRig(fake, database_url)
        await rig.start()
        try:
            fake.user_message(ANN, "I need a human", first_name="Ann")
            await eventually(lambda: fake.sent(chat_id=STAFF_CHAT))
            [summary_params] = fake.sent(chat_id=STAFF_CHAT)
            assert "message_thread_id" not in summary_params
            summary = fake.bot_messages(STAFF_CHAT)[-1]
            await eventually(lambda: rig.rows(StaffPost))  # a person takes longer than this
            fake.user_message(
                STAFFER,
                "Hi Ann, Bob from sales.",
                first_name="Bob",
                chat_id=STAFF_CHAT,
                reply_to_message=summary,
            )
            await eventually(lambda: texts(fake, ANN)[-1:] == ["Hi Ann, Bob from sales."])
            chatter = fake.user_message(
                STAFFER, "unrelated chatter", first_name="Bob", chat_id=STAFF_CHAT
            )
            await eventually(lambda: _handled_update(rig, chatter["update_id"]))
            assert "unrelated chatter" not in texts(fake, ANN)
        finally:
            await rig.stop()
