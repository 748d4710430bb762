"""Sending to Telegram under rate limits and failures: delayed, never lost, never doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.store import outbox
from bot.store.models import Contact, OutboxItem
from channels.base import Failed, RetryLater, Unknown
from channels.telegram.sending import classify, send_text
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, ScriptedModel, turn
from tests.support.telegram_rig import ADMIN_ID, STAFF_CHAT, TelegramRig, eventually

ANN = 501


async def test_a_429_storm_delays_but_loses_and_duplicates_nothing(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(FunctionModel(lambda request: turn(f"reply {len(request.messages)}")))
    try:
        fake.fail_next("sendMessage", 429, retry_after=1, times=6)
        prospects = list(range(600, 606))
        for user in prospects:
            fake.user_message(user, "hello there", first_name=f"P{user}")
        await eventually(lambda: all(texts(fake, u) for u in prospects), within=20)
        sent = Counter(int(p["chat_id"]) for p in fake.sent() if int(p["chat_id"]) > 0)
        assert sent == Counter(dict.fromkeys(prospects, 1))
        items = await eventually(lambda: _all_sent(rig))
        assert len(items) == len(prospects)
        # A 429 sent nothing and waiting always gets through: not a failed attempt, so a
        # busy hour can never use up a message's attempts.
        assert sum(i.attempts for i in items) == len(prospects)
    finally:
        await rig.stop()


async def _all_sent(rig: TelegramRig) -> list[OutboxItem]:
    """The customer outbox items, once every one of them is recorded as sent."""
    items = await rig.rows(OutboxItem, OutboxItem.channel == "telegram")
    return items if items and {i.status for i in items} == {"sent"} else []


async def test_server_errors_are_retried_until_delivered(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(ScriptedModel(turn("Hi Ann!")))
    try:
        fake.fail_next("sendMessage", 502, times=2)
        fake.user_message(ANN, "hello", first_name="Ann")
        await eventually(lambda: texts(fake, ANN) == ["Hi Ann!"])
    finally:
        await rig.stop()


async def test_a_user_who_blocked_the_bot_becomes_unreachable(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(ScriptedModel(turn("Hi Ann!")))
    try:
        fake.set_blocked(ANN)
        fake.user_message(ANN, "hello", first_name="Ann")
        [item] = await eventually(lambda: rig.rows(OutboxItem, OutboxItem.status == "failed"))
        assert "blocked" in (item.last_error or "")
        [contact] = await rig.rows(Contact)
        assert contact.unreachable
    finally:
        await rig.stop()


async def test_long_replies_are_split_cleanly_in_order(
    fake: FakeTelegram, database_url: str
) -> None:
    paragraphs = [f"Paragraph {n}. " + "word " * 180 for n in range(12)]
    long_text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(long_text) > 8192
    rig = TelegramRig(fake, database_url)
    await rig.start(ScriptedModel(turn(long_text)))
    try:
        fake.user_message(ANN, "tell me everything", first_name="Ann")
        await eventually(lambda: len(texts(fake, ANN)) == 3, within=15)
        parts = texts(fake, ANN)
        assert all(len(p) <= 4096 for p in parts)
        assert all(p.endswith("word") for p in parts)  # cut between paragraphs
        assert "\n\n".join(parts) == long_text
    finally:
        await rig.stop()


async def _post(rig: TelegramRig, key: str, chat_id: int, text: str, **meta: int) -> None:
    """Queue a post about no conversation (an admin's reply) straight to `chat_id`."""
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        await outbox.enqueue(
            session,
            key=key,
            conversation_id=None,
            contact_id=None,
            channel="telegram",
            recipient=str(chat_id),
            text=text,
            author="system",
            meta=meta,
            to_contact=False,
        )
    rig.app.wake_outbox()


async def test_posts_about_no_conversation_go_to_their_chat_topic_and_message(
    fake: FakeTelegram, rig: TelegramRig
) -> None:
    topic = fake.add_topic(STAFF_CHAT, "Admin")["message_thread_id"]
    command = fake.store(fake.new_message(STAFF_CHAT, fake.user(ADMIN_ID), topic))["message_id"]

    await _post(rig, "admin:1", STAFF_CHAT, "Done.", thread_id=topic, reply_to_message_id=command)
    await _post(rig, "admin:2", ANN, "A note for Ann")

    [reply] = await eventually(lambda: fake.sent(chat_id=STAFF_CHAT, thread_id=topic))
    assert reply["text"] == "Done."
    assert reply["reply_parameters"]["message_id"] == command
    [stored] = fake.bot_messages(STAFF_CHAT)[-1:]
    assert stored["reply_to_message"]["message_id"] == command
    assert await eventually(lambda: texts(fake, ANN)) == ["A note for Ann"]
    items = await eventually(lambda: _all_sent(rig))
    assert {i.idempotency_key for i in items} == {"admin:1", "admin:2"}


async def test_formatting_telegram_rejects_is_sent_as_plain_text(fake: FakeTelegram) -> None:
    bot = Bot(fake.token, base_url=fake.base_url)
    async with bot:
        sent = await send_text(bot, ANN, "Price: 5.00 (approx)!", parse_mode="MarkdownV2")
    assert sent.text == "Price: 5.00 (approx)!"
    assert [c.status for c in fake.calls_of("sendMessage")] == [400, 200]
    assert "parse_mode" not in fake.calls_of("sendMessage")[1].params


def _caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RetryAfter(7), RetryLater),
        (Forbidden("Forbidden: bot was blocked by the user"), Failed),
        (BadRequest("Bad Request: chat not found"), Failed),
        (NetworkError("Bad Gateway"), RetryLater),
        (_caused(TimedOut(), httpx.ConnectTimeout("x")), RetryLater),
        (_caused(TimedOut(), httpx.ReadTimeout("x")), Unknown),
        (
            _caused(NetworkError("httpx.RemoteProtocolError"), httpx.RemoteProtocolError("x")),
            Unknown,
        ),
    ],
)
def test_failures_are_classified_so_nothing_is_sent_twice(error: Exception, expected: type) -> None:
    result = classify(error)  # type: ignore[arg-type]
    assert isinstance(result, expected)
    if isinstance(result, RetryLater) and isinstance(error, RetryAfter):
        assert result.after == 7
    if isinstance(error, Forbidden | BadRequest):
        assert isinstance(result, Failed)
        assert result.unreachable


@pytest.mark.parametrize(("rate", "paid"), [(30.0, False), (200.0, True)])
async def test_sending_above_the_free_limit_asks_for_paid_broadcasts(
    fake: FakeTelegram, database_url: str, rate: float, paid: bool
) -> None:
    rig = TelegramRig(fake, database_url, telegram_max_messages_per_second=rate)
    await rig.start(ScriptedModel(turn("Hi Ann!")))
    try:
        fake.user_message(ANN, "hello", first_name="Ann")
        await eventually(lambda: texts(fake, ANN) == ["Hi Ann!"])
        (sent,) = fake.sent(chat_id=ANN)
        assert bool(sent.get("allow_paid_broadcast")) is paid
    finally:
        await rig.stop()


async def test_two_workers_sending_to_one_chat_keep_to_one_message_a_second_together(
    fake: FakeTelegram, database_url: str
) -> None:
    first, second = (TelegramRig(fake, database_url, worker_id=f"worker-{n}") for n in (1, 2))
    for rig in (first, second):
        await rig.start(FunctionModel(lambda request: turn("Hi Ann!")))
    assert first.app is not None and second.app is not None
    later = second.app.outbox_workers["telegram"]
    later.stop()  # so the first reply goes from the first worker, and this one never saw it
    try:
        fake.user_message(ANN, "hello", first_name="Ann")
        await eventually(lambda: texts(fake, ANN) == ["Hi Ann!"])
        first.app.outbox_workers["telegram"].stop()
        (reply,) = await first.rows(OutboxItem, OutboxItem.channel == "telegram")
        assert reply.claimed_by == "worker-1"
        async with second.app.db.transaction() as session:
            await outbox.enqueue(
                session,
                key="next",
                conversation_id=reply.conversation_id,
                contact_id=reply.contact_id,
                channel="telegram",
                recipient=str(ANN),
                text="And one more thing.",
            )
        # The second worker's own pacing never saw this chat: only the claim, which sees
        # what every worker sent, can keep the chat's second.
        passes = 1
        while not await later.deliver_due():
            passes += 1
            await asyncio.sleep(0.05)
        assert texts(fake, ANN) == ["Hi Ann!", "And one more thing."]
        arrivals = [c.at for c in fake.calls if c.method == "sendMessage" and _to(c, ANN)]
        assert arrivals[1] - arrivals[0] >= 1.0
        assert passes > 1  # held back at first: it was too soon
    finally:
        for rig in (first, second):
            await rig.stop()


def _to(call: Any, chat_id: int) -> bool:
    return str(call.params.get("chat_id")) == str(chat_id)
