"""One bad update never stops the bot: it is set aside whole, audited, and the bot reads on."""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError
from telegram import Update
from telegram.ext import TypeHandler

from bot.store import cursors, deadletters
from bot.store.models import AuditEvent, DeadLetter, Message, OutboxItem
from channels.telegram.ingest import CURSOR_KEY
from channels.telegram.updates import payload_bytes
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import ADMIN_ID, STAFF_CHAT, TelegramRig, eventually

ANN, BEN = 501, 502
SECRET_WORDS = "my private words 7f3a"
JSON = dict[str, Any]


def _echo() -> FunctionModel:
    return FunctionModel(lambda request: turn("got it"))


def _valid(fake: FakeTelegram, text: str = SECRET_WORDS) -> JSON:
    """A well-formed update, taken back off the fake's queue to be spoiled and pushed again."""
    update = fake.user_message(BEN, text, first_name="Ben")
    fake.pending.remove(update)
    return copy.deepcopy(update)


def _without_date(u: JSON) -> None:
    del u["message"]["date"]


def _string_id(u: JSON) -> None:
    u["message"]["from"]["id"] = "502"


def _message_list(u: JSON) -> None:
    u["message"] = [u["message"]]


def _lone_surrogate(u: JSON) -> None:
    u["message"]["text"] = f"{SECRET_WORDS} \ud800"


def _huge_id(u: JSON) -> None:
    u["message"]["chat"]["id"] = 2**70


SHAPES: dict[str, Callable[[JSON], None]] = {
    "no date": _without_date,
    "string id": _string_id,
    "message as a list": _message_list,
    "lone surrogate": _lone_surrogate,
    "id beyond 64 bits": _huge_id,
}


@pytest.mark.parametrize("spoil", SHAPES.values(), ids=SHAPES.keys())
async def test_a_bad_update_is_set_aside_and_the_bot_answers_the_next_one(
    fake: FakeTelegram,
    database_url: str,
    spoil: Callable[[JSON], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bad = _valid(fake)
    spoil(bad)
    fake.pending.append(bad)  # as it came: the fake cannot file it under its chat
    fake.user_message(ANN, "hello", first_name="Ann")
    rig = TelegramRig(fake, database_url)
    await rig.start(_echo())
    try:
        await eventually(lambda: texts(fake, ANN) == ["got it"])
        (letter,) = await eventually(lambda: rig.rows(DeadLetter))
        assert letter.source == "telegram"
        assert letter.ref == f"update {bad['update_id']}"
        assert json.loads(letter.payload) == json.loads(json.dumps(bad))  # kept whole
        assert letter.error
        assert await _cursor(rig) >= bad["update_id"]  # the bot read past it
        (event,) = await rig.rows(AuditEvent, AuditEvent.kind == "dead_letter")
        assert event.payload["id"] == letter.id
        await eventually(lambda: _staff_alerts(fake))
        assert not await rig.rows(Message, Message.contact_id.is_not(None), Message.text == "")
    finally:
        await rig.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_WORDS not in logged  # the customer's words are in the dead letter only


async def test_a_restart_does_not_stop_on_the_same_bad_update_again(
    fake: FakeTelegram, database_url: str
) -> None:
    bad = _valid(fake)
    _without_date(bad)
    fake.pending.append(bad)  # as it came: the fake cannot file it under its chat
    first = TelegramRig(fake, database_url)
    await first.start(_echo())
    await eventually(lambda: first.rows(DeadLetter))
    await first.stop()
    fake.pending.insert(0, bad)  # Telegram hands it over again (say the cursor was not saved)
    fake.user_message(ANN, "still there?", first_name="Ann")
    second = TelegramRig(fake, database_url)
    await second.start(_echo())
    try:
        await eventually(lambda: texts(fake, ANN) == ["got it"])
        (letter,) = await second.rows(DeadLetter)
        assert letter.seen in (1, 2)  # kept once, however often it is seen
        assert len(await second.rows(AuditEvent, AuditEvent.kind == "dead_letter")) == 1
    finally:
        await second.stop()


async def test_staff_hear_of_dead_letters_once_an_hour_per_kind(
    fake: FakeTelegram, database_url: str
) -> None:
    for n in range(3):
        bad = _valid(fake, f"text {n}")
        _without_date(bad)
        fake.pending.append(bad)  # as it came: the fake cannot file it under its chat
    fake.user_message(ANN, "hello", first_name="Ann")
    rig = TelegramRig(fake, database_url)
    await rig.start(_echo())
    try:
        await eventually(lambda: texts(fake, ANN) == ["got it"])
        assert len(await rig.rows(DeadLetter)) == 3
        assert len(await rig.rows(AuditEvent, AuditEvent.kind == "dead_letter")) == 3
        alerts = await rig.rows(OutboxItem, OutboxItem.idempotency_key.like("dead-letter:%"))
        assert len(alerts) == 1
        await eventually(lambda: _staff_alerts(fake))
    finally:
        await rig.stop()


async def test_one_unstorable_message_does_not_hold_back_its_batch(
    fake: FakeTelegram, database_url: str
) -> None:
    fake.user_message(ANN, "first", first_name="Ann")
    bad = _valid(fake)
    _huge_id(bad)
    fake.pending.append(bad)  # as it came: the fake cannot file it under its chat
    fake.user_message(ANN, "third", first_name="Ann")
    rig = TelegramRig(fake, database_url, coalesce_seconds=0.3)
    await rig.start(_echo())
    try:
        inbound = await eventually(lambda: _inbound_texts(rig, 2))
        assert inbound == ["first", "third"]
        assert len(await rig.rows(DeadLetter)) == 1
    finally:
        await rig.stop()


@pytest.mark.parametrize(
    "body",
    [b"[1, 2, 3]", b"42", b'"text"', b"null", b"{not json", b'{"update_id": 5, "message": []}'],
)
async def test_a_webhook_body_that_is_not_an_update_gets_400_and_an_audit_row(
    fake: FakeTelegram, database_url: str, unused_tcp_port: int, body: bytes
) -> None:
    rig = TelegramRig(
        fake,
        database_url,
        telegram_webhook_url=f"https://bot.example.com/hook/{unused_tcp_port}",
        telegram_webhook_secret="s3cret-token",
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=unused_tcp_port,
    )
    await rig.start(_echo())
    try:
        url = f"http://127.0.0.1:{unused_tcp_port}/hook/{unused_tcp_port}"
        assert await _post(url, body) == 400
        assert await rig.rows(AuditEvent, AuditEvent.kind == "update_malformed")
        huge = b'{"update_id": 6, "message": {"text": "' + b"x" * (4 * 1024 * 1024) + b'"}}'
        assert await _post(url, huge) == 413  # 4 MB: refused, recorded, the bot goes on
        refused = await rig.rows(AuditEvent, AuditEvent.kind == "update_malformed")
        assert any("larger than" in e.payload["error"] for e in refused)
        surrogate = b'{"update_id": 7, "message": {"text": "\\ud800"}}'
        assert await _post(url, surrogate) == 400
        update = fake.user_message(ANN, "hello", first_name="Ann")
        assert await fake.webhook_post(url, update, secret="s3cret-token") == 200
        await eventually(lambda: texts(fake, ANN) == ["got it"])
    finally:
        await rig.stop()


async def _post(url: str, body: bytes) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(body), headers=headers) as response,
    ):
        return response.status


async def _cursor(rig: TelegramRig) -> int:
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        return int(await cursors.load(session, CURSOR_KEY) or 0)


async def _inbound_texts(rig: TelegramRig, count: int) -> list[str]:
    found = [m.text for m in await rig.rows(Message, Message.direction == "in")]
    return found if len(found) >= count else []


def _staff_alerts(fake: FakeTelegram) -> list[str]:
    return [t for t in texts(fake, STAFF_CHAT) if "dead letter" in t]


async def test_a_dead_letter_queued_for_retry_is_read_again_by_the_running_bot(
    fake: FakeTelegram, database_url: str
) -> None:
    readable = _valid(fake, "I wrote this while you were broken")
    broken = _valid(fake)
    _without_date(broken)
    rig = TelegramRig(fake, database_url)
    await rig.start(_echo())
    try:
        assert rig.app is not None
        async with rig.app.db.transaction() as session:
            ids = [
                (
                    await deadletters.keep(
                        session,
                        source="telegram",
                        kind="update_failed",  # as an older version, with a bug, left them
                        ref=f"update {raw['update_id']}",
                        payload=payload_bytes(raw),
                        error="a bug since fixed",
                    )
                ).letter.id
                for raw in (readable, broken)
            ]
            for letter_id in ids:
                await deadletters.queue_retry(session, letter_id)
        await eventually(lambda: texts(fake, BEN) == ["got it"])
        fixed, still_broken = await eventually(lambda: _settled(rig, ids))
        assert fixed.status == "retried"
        assert still_broken.status == "failed_again" and "date" in still_broken.error
    finally:
        await rig.stop()


async def _settled(rig: TelegramRig, ids: list[int]) -> list[DeadLetter]:
    rows = sorted(await rig.rows(DeadLetter, DeadLetter.id.in_(ids)), key=lambda r: r.id)
    return rows if all(r.status in ("retried", "failed_again") for r in rows) else []


class Flaky:
    """A handler ahead of ours that fails on one update: first as `first`, then not at all."""

    def __init__(self, text: str, first: Exception) -> None:
        self.text, self.first, self.seen = text, first, 0

    async def __call__(self, update: Update, context: object) -> None:
        message = update.effective_message
        if message is None or message.text != self.text:
            return
        self.seen += 1
        if self.seen == 1:
            raise self.first


async def _with_flaky_handler(rig: TelegramRig, flaky: Flaky) -> None:
    assert rig.service is not None
    rig.service.application.add_handler(TypeHandler(Update, flaky), group=-1)


async def test_a_handler_failing_on_the_database_is_read_again_and_applied(
    fake: FakeTelegram, database_url: str
) -> None:
    locked = OperationalError("UPDATE ...", {}, Exception("database is locked"))
    flaky = Flaky("/agent list", locked)
    rig = TelegramRig(fake, database_url)
    await rig.start(_echo())
    await _with_flaky_handler(rig, flaky)
    try:
        fake.user_message(ADMIN_ID, "/agent list", first_name="Ada")
        await eventually(lambda: flaky.seen == 2, within=20)  # the batch was read again
        await eventually(lambda: texts(fake, ADMIN_ID), within=20)
        assert len(texts(fake, ADMIN_ID)) == 1  # and the command answered once
        assert not await rig.rows(DeadLetter)
    finally:
        await rig.stop()


async def test_a_handler_failing_on_its_input_sets_the_update_aside(
    fake: FakeTelegram, database_url: str
) -> None:
    flaky = Flaky("/agent list", ValueError("a bug"))
    rig = TelegramRig(fake, database_url)
    await rig.start(_echo())
    await _with_flaky_handler(rig, flaky)
    try:
        fake.user_message(ADMIN_ID, "/agent list", first_name="Ada")
        fake.user_message(ANN, "hello", first_name="Ann")
        await eventually(lambda: texts(fake, ANN) == ["got it"])
        (letter,) = await eventually(lambda: rig.rows(DeadLetter))
        assert letter.kind == "update_failed" and "a bug" in letter.error
        assert flaky.seen == 1
    finally:
        await rig.stop()
