"""Bot API faults over the real socket: cut connections, answers that never come, a slow server.

Each test runs the whole Telegram channel (python-telegram-bot against the fake on 127.0.0.1)
and counts from the server's side. A send cut between the request leaving and the answer
arriving may or may not have reached the customer: it is `unknown`, never sent again, and
staff are told a person must look. A failure of getUpdates costs a retry, never an update.
"""

from __future__ import annotations

from collections import Counter

from bot.store.models import AuditEvent, Message, OutboxItem
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig, eventually

ANN, BOB = 501, 502
ALERT = "⚠️ A message to this customer on telegram may not have been delivered"


def _replies() -> FunctionModel:
    return FunctionModel(lambda request: turn(f"reply to {request.messages[-1].text}"))  # type: ignore[union-attr]


def _staff_alerts(fake: FakeTelegram) -> list[str]:
    return [t for t in texts(fake, STAFF_CHAT) if t.startswith(ALERT)]


async def _outbox(rig: TelegramRig, status: str) -> list[OutboxItem]:
    return await rig.rows(OutboxItem, OutboxItem.channel == "telegram", OutboxItem.status == status)


async def _delivery_results(rig: TelegramRig) -> Counter[str]:
    events = await rig.rows(AuditEvent, AuditEvent.kind == "delivery")
    return Counter(str(e.payload["result"]) for e in events)


async def test_a_send_cut_after_the_server_acted_is_unknown_never_resent_and_staff_are_told(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(_replies())
    try:
        fake.reset_next("sendMessage", after_acting=True)
        fake.user_message(ANN, "first", first_name="Ann")
        (item,) = await eventually(lambda: _outbox(rig, "unknown"))
        assert "connection lost" in (item.last_error or "")
        await eventually(lambda: _staff_alerts(fake))

        fake.user_message(ANN, "second", first_name="Ann")  # the bot goes on as before
        await eventually(lambda: len(texts(fake, ANN)) == 2)
        assert texts(fake, ANN) == ["reply to first", "reply to second"]  # each once
        assert (await _delivery_results(rig))["Unknown"] == 1
        (alert,) = _staff_alerts(fake)
        assert "It will not be sent again automatically" in alert and "reply to first" in alert
    finally:
        await rig.stop()


async def test_a_send_cut_before_the_server_acted_is_unknown_too_and_a_person_is_asked(
    fake: FakeTelegram, database_url: str
) -> None:
    """From the client's side a cut before and a cut after look the same; resending would
    double the message in the other case, so a person decides."""
    rig = TelegramRig(fake, database_url)
    await rig.start(_replies())
    try:
        fake.reset_next("sendMessage", after_acting=False)
        fake.user_message(ANN, "first", first_name="Ann")
        await eventually(lambda: _outbox(rig, "unknown"))
        await eventually(lambda: _staff_alerts(fake))
        assert texts(fake, ANN) == []  # it never arrived, and it is not sent again
        assert len(fake.calls_of("sendMessage")) == 1 + len(texts(fake, STAFF_CHAT))
    finally:
        await rig.stop()


async def test_an_answer_that_never_comes_times_out_as_unknown_and_is_not_resent(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(_replies())
    try:
        # The server delivers, then holds its answer past python-telegram-bot's read timeout
        # (5 s by default): the classic "sent, but the reply was lost".
        fake.delay_next("sendMessage", 8)
        fake.user_message(ANN, "first", first_name="Ann")
        (item,) = await eventually(lambda: _outbox(rig, "unknown"), within=20)
        assert "timed out after sending" in (item.last_error or "")
        await eventually(lambda: _staff_alerts(fake))
        assert texts(fake, ANN) == ["reply to first"]  # delivered by the server, exactly once
    finally:
        await rig.stop()


async def test_cut_and_failing_polls_and_a_slow_server_lose_and_repeat_no_update(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(_replies())
    try:
        # The poll after acting is the dangerous one: the server handed out the updates, and
        # the answer never arrived. They are confirmed only by the next offset, so they come
        # again, and recording is keyed on the update id.
        fake.reset_next("getUpdates", after_acting=True, times=2)
        fake.reset_next("getUpdates", after_acting=False)
        fake.fail_next("getUpdates", 500, times=2)
        fake.fail_next("getUpdates", 429, retry_after=1)
        fake.delay_next("getUpdates", 1.5, times=3)
        fake.delay_next("sendMessage", 1.5, times=4)  # slow, but inside the client's timeout
        for n in range(3):
            fake.user_message(ANN, f"ann {n}", first_name="Ann")
            fake.user_message(BOB, f"bob {n}", first_name="Bob")

        written = sorted(f"{name} {n}" for name in ("ann", "bob") for n in range(3))
        inbound = await eventually(lambda: _all_handled(rig, len(written)), within=40)
        assert sorted(m.text for m in inbound) == written  # each recorded once, none lost
        await eventually(lambda: _nothing_queued(rig), within=20)
        for user, name in ((ANN, "ann"), (BOB, "bob")):
            replies = texts(fake, user)
            assert len(replies) == len(set(replies)), replies  # nothing sent twice
            assert replies, f"{name} got no answer"
            assert all(r.startswith(f"reply to {name} ") for r in replies)
            # A burst is answered in one run, which sees the messages joined.
            assert replies[-1].endswith(f"{name} 2")
        handled = await rig.rows(OutboxItem, OutboxItem.channel == "telegram")
        assert {i.status for i in handled} == {"sent"}
        assert _staff_alerts(fake) == []
    finally:
        await rig.stop()


async def _all_handled(rig: TelegramRig, count: int) -> list[Message]:
    inbound = await rig.rows(Message, Message.direction == "in")
    return inbound if len(inbound) >= count and all(m.handled_at for m in inbound) else []


async def _nothing_queued(rig: TelegramRig) -> bool:
    items = await rig.rows(OutboxItem)
    return bool(items) and all(i.status in ("sent", "failed", "unknown") for i in items)
