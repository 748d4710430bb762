"""Updates come in exactly once, in order, whatever restarts and redeliveries happen."""

from __future__ import annotations

import socket

from bot.store import cursors
from bot.store.db import Database
from bot.store.models import AgentRun, AuditEvent, Contact, Message
from channels.telegram.ingest import CURSOR_KEY
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import TelegramRig, eventually

ANN, BOT_USER = 501, 999


def _echo() -> FunctionModel:
    return FunctionModel(lambda request: turn(f"got: {request.messages[-1]}"))


async def _inbound(rig: TelegramRig) -> list[Message]:
    return await rig.rows(Message, Message.direction == "in")


async def test_a_restart_neither_drops_nor_repeats_updates(
    fake: FakeTelegram, database_url: str
) -> None:
    first = TelegramRig(fake, database_url)
    await first.start(_echo())
    fake.user_message(ANN, "one", first_name="Ann")
    fake.user_message(ANN, "two", first_name="Ann")
    await eventually(lambda: _count_is(first, 2))
    await first.stop()
    saved = await _saved_cursor(database_url)
    polls_before = len(fake.calls_of("getUpdates"))
    fake.user_message(ANN, "three (sent while we were down)", first_name="Ann")
    second = TelegramRig(fake, database_url)
    await second.start(_echo())
    try:
        await eventually(lambda: _count_is(second, 3))
        assert [m.text for m in await _inbound(second)] == [
            "one",
            "two",
            "three (sent while we were down)",
        ]
        resumed = fake.calls_of("getUpdates")[polls_before]
        assert int(resumed.params["offset"]) == saved + 1
    finally:
        await second.stop()


async def _saved_cursor(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            value = await cursors.load(session, CURSOR_KEY)
    finally:
        await db.dispose()
    assert value is not None
    return int(value)


async def _count_is(rig: TelegramRig, n: int) -> bool:
    return len(await _inbound(rig)) == n


async def test_a_batch_replayed_after_a_crash_is_recorded_once(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    assert rig.service is not None
    raw = [fake.user_message(ANN, f"m{n}", first_name="Ann") for n in range(3)]
    await eventually(lambda: _count_is(rig, 3))
    await rig.service.intake.handle_raw(raw)  # as if the cursor had not been saved
    assert [m.text for m in await _inbound(rig)] == ["m0", "m1", "m2"]


async def test_a_burst_is_answered_in_one_run_after_a_quiet_moment(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url, coalesce_seconds=0.5)
    model = _echo()
    await rig.start(model)
    try:
        for text in ("hi", "so, about pricing", "we are 12 people"):
            fake.user_message(ANN, text, first_name="Ann")
        await eventually(lambda: texts(fake, ANN))
        [run] = await rig.rows(AgentRun)
        assert len(model.requests) == 1
        assert "we are 12 people" in str(model.requests[0].messages[-1])
        assert "hi" in str(model.requests[0].messages[-1])
        assert run.status == "finished"
    finally:
        await rig.stop()


async def test_media_contacts_and_edits_become_inbound_messages(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(ANN, caption="our logo", photo=b"\x89PNG fake", first_name="Ann")
    fake.user_message(ANN, document=("brief.pdf", b"%PDF-1.4 fake"), first_name="Ann")
    fake.user_message(ANN, contact="+4915112345678", first_name="Ann")
    original = fake.user_message(ANN, "we are 10 people", first_name="Ann")["message"]
    fake.edited_message(original, "we are 12 people")
    await eventually(lambda: _count_is(rig, 5))
    photo, document, shared, plain, edit = await _inbound(rig)
    assert photo.text == "our logo"
    assert plain.text == "we are 10 people"
    assert photo.attachments[0]["type"] == "photo"
    assert document.attachments[0]["name"] == "brief.pdf"
    assert "+4915112345678" in shared.text
    assert edit.text == "(edited an earlier message) we are 12 people"
    [contact] = await rig.rows(Contact)
    assert contact.phone == "+4915112345678"


async def test_other_bots_and_unknown_groups_are_ignored(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(BOT_USER, "beep", first_name="Spam", is_bot=True)
    fake.add_supergroup(-100999, "Random group", is_forum=False)
    fake.user_message(ANN, "hello group", first_name="Ann", chat_id=-100999)
    fake.user_message(ANN, "hello bot", first_name="Ann")
    await eventually(lambda: _count_is(rig, 1))
    await eventually(lambda: texts(fake, ANN))
    assert [m.text for m in await _inbound(rig)] == ["hello bot"]
    assert not texts(fake, -100999)
    assert not texts(fake, BOT_USER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_refuses_requests_without_the_right_secret(
    fake: FakeTelegram, database_url: str
) -> None:
    port = _free_port()
    rig = TelegramRig(
        fake,
        database_url,
        telegram_webhook_url=f"https://bot.example.test:{port}/telegram/hook",
        telegram_webhook_secret="s3cret-token",
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
    )
    await rig.start(_echo())
    try:
        assert fake.webhook is not None
        assert fake.webhook.secret_token == "s3cret-token"
        local = f"http://127.0.0.1:{port}/telegram/hook"
        update = fake.user_message(ANN, "via webhook", first_name="Ann")
        assert await fake.webhook_post(local, update, secret="wrong") == 403
        assert await fake.webhook_post(local, update, secret=None) == 403
        assert await _inbound(rig) == []
        assert rig.app is not None
        await rig.app.refusals.flush()  # refusals are audited as a count per minute
        [refused] = await rig.rows(AuditEvent, AuditEvent.kind == "refused")
        assert (refused.actor, refused.payload["count"]) == ("telegram:webhook", 2)
        assert await fake.webhook_post(local, update, secret="s3cret-token") == 200
        await eventually(lambda: texts(fake, ANN))
        assert [m.text for m in await _inbound(rig)] == ["via webhook"]
        assert not fake.calls_of("getUpdates")
    finally:
        await rig.stop()
