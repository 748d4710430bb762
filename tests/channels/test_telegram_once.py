"""Every update is applied once by its update_id, whatever its kind and however it arrives.

Each test delivers an update, then delivers the very same update again (Telegram does so after
a crash before the cursor was saved, or when it missed the webhook's answer), by long polling
and by webhook.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agents.providers.base import Provider
from bot.store.models import (
    AgentRun,
    AuditEvent,
    Contact,
    Conversation,
    PendingConfirmation,
    StaffThread,
)
from tests.channels.conftest import texts
from tests.channels.telegram_feed import Feed, webhook_rig
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_updates import JSON
from tests.support.models import ScriptedModel, call, turn
from tests.support.telegram_rig import ADMIN_ID, STAFF_CHAT, TelegramRig, eventually

ANN, STAFFER = 501, 8001


class Line:
    """A rig started on demand (some tests need a scripted model) and its feed."""

    def __init__(self, mode: str, fake: FakeTelegram, database_url: str) -> None:
        if mode == "webhook":
            rig, url = webhook_rig(fake, database_url)
        else:
            rig, url = TelegramRig(fake, database_url), ""
        self.feed = Feed(mode, fake, rig, url)
        self.fake, self.rig = fake, rig

    async def start(self, model: Provider | None = None) -> None:
        await self.rig.start(model)

    async def say(self, user_id: int, text: str, **fields: object) -> JSON:
        update = self.fake.user_message(user_id, text, **fields)  # type: ignore[arg-type]
        await self.feed.deliver(update)
        return update

    async def in_topic(self, user_id: int, text: str, thread_id: int) -> JSON:
        return await self.say(
            user_id, text, first_name="Alice", chat_id=STAFF_CHAT, message_thread_id=thread_id
        )

    async def settle(self) -> None:
        """Let anything wrongly queued by a replay go out before counting."""
        assert self.rig.app is not None
        await self.rig.app.flush_outbox()
        await asyncio.sleep(0.2)

    async def events(self, kind: str) -> list[AuditEvent]:
        return await self.rig.rows(AuditEvent, AuditEvent.kind == kind)


@pytest.fixture(params=["polling", "webhook"])
async def line(
    request: pytest.FixtureRequest, fake: FakeTelegram, database_url: str
) -> AsyncIterator[Line]:
    running = Line(request.param, fake, database_url)
    try:
        yield running
    finally:
        await running.rig.stop()


async def _hand_off(line: Line) -> int:
    """Ann asks for a refund; returns her staff topic's thread id. Alice is staff."""
    line.fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    await line.say(ANN, "hello", first_name="Ann")
    await eventually(lambda: texts(line.fake, ANN))
    await line.say(ANN, "I want a refund", first_name="Ann")
    [thread] = await eventually(lambda: line.rig.rows(StaffThread))
    return int(thread.thread_id or 0)


def _count(fake: FakeTelegram, chat_id: int, phrase: str) -> int:
    return sum(phrase in t for t in texts(fake, chat_id))


async def test_a_replayed_note_is_saved_once(line: Line) -> None:
    await line.start()
    thread_id = await _hand_off(line)
    note = await line.in_topic(STAFFER, "/note refund approved by finance", thread_id)
    await eventually(lambda: _count(line.fake, STAFF_CHAT, "Note saved"))
    await line.feed.redeliver(note)
    await line.settle()
    [contact] = await line.rig.rows(Contact)
    assert [n["text"] for n in contact.custom_fields["staff_notes"]] == [
        "refund approved by finance"
    ]
    assert len(await line.events("staff_note")) == 1
    assert _count(line.fake, STAFF_CHAT, "Note saved") == 1


async def test_a_replayed_close_is_applied_once(line: Line) -> None:
    await line.start()
    thread_id = await _hand_off(line)
    close = await line.in_topic(STAFFER, "/close", thread_id)
    await eventually(lambda: _count(line.fake, STAFF_CHAT, "Conversation closed"))
    await line.feed.redeliver(close)
    await line.settle()
    [conversation] = await line.rig.rows(Conversation)
    assert conversation.state == "closed"
    assert len(await line.events("conversation_closed")) == 1
    assert _count(line.fake, STAFF_CHAT, "Conversation closed") == 1


async def test_a_replayed_admin_command_runs_and_is_answered_once(line: Line) -> None:
    await line.start()
    command = await line.say(ADMIN_ID, "/agent create helper", first_name="Boss")
    await eventually(lambda: texts(line.fake, ADMIN_ID))
    await line.feed.redeliver(command)
    await line.settle()
    [reply] = texts(line.fake, ADMIN_ID)
    assert reply.startswith("Created helper")
    assert len(await line.events("admin_command")) == 1
    [sent] = line.fake.sent(chat_id=ADMIN_ID)
    assert int(str(sent["reply_parameters"]["message_id"])) == command["message"]["message_id"]


async def test_a_replayed_button_press_is_decided_once(line: Line) -> None:
    await line.start(
        ScriptedModel(
            turn("", call("update_deal_stage", {"stage": "qualified"}, id="1")),
            turn("", call("update_deal_stage", {"stage": "lost"}, id="2")),
            turn("", call("finish")),
        )
    )
    line.fake.set_member_status(STAFF_CHAT, STAFFER, "member")
    await line.say(ANN, "we picked another vendor", first_name="Ann")
    await eventually(lambda: [p for p in line.fake.sent(chat_id=STAFF_CHAT) if "reply_markup" in p])
    message = line.fake.bot_messages(STAFF_CHAT)[-1]
    [pending] = await eventually(lambda: line.rig.rows(PendingConfirmation))
    press = line.fake.callback_query(
        STAFFER, message, f"confirm:{pending.id}:approve", chat_id=STAFF_CHAT
    )
    await line.feed.deliver(press)
    await eventually(lambda: line.fake.calls_of("editMessageText"))
    await line.feed.redeliver(press)
    await line.settle()
    assert len(line.fake.calls_of("answerCallbackQuery")) == 1
    assert len(line.fake.calls_of("editMessageText")) == 1
    assert len(await line.events("confirmation_decided")) == 1
    assert not await line.events("update_failed")


async def test_a_replayed_dry_run_runs_the_agent_at_most_once(line: Line) -> None:
    await line.start()
    command = await line.say(ADMIN_ID, "/agent test lead-qualifying hi there", first_name="Boss")
    await eventually(lambda: texts(line.fake, ADMIN_ID))
    await line.feed.redeliver(command)
    await line.settle()
    assert _count(line.fake, ADMIN_ID, "Dry run of lead-qualifying") == 1
    assert len(await line.rig.rows(AgentRun, AgentRun.trigger == "test")) == 1


async def test_an_edited_note_or_reply_is_not_applied_again(line: Line) -> None:
    await line.start()
    thread_id = await _hand_off(line)
    note = await line.in_topic(STAFFER, "/note call back on Monday", thread_id)
    reply = await line.in_topic(STAFFER, "We will refund you today.", thread_id)
    await eventually(lambda: _count(line.fake, ANN, "We will refund you today."))

    for sent, text in ((note, "/note call back on Tuesday"), (reply, "We will refund you soon.")):
        edit = line.fake.edited_message(sent["message"], text)
        await line.feed.deliver(edit)
    await eventually(lambda: _count(line.fake, STAFF_CHAT, "Edits are not passed on") == 2)
    await line.settle()

    [contact] = await line.rig.rows(Contact)
    assert [n["text"] for n in contact.custom_fields["staff_notes"]] == ["call back on Monday"]
    assert _count(line.fake, ANN, "refund") == 1  # the customer got the first version only
