"""The outbox sends each message once, in order per conversation, and never resends a maybe."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app.delivery import OutboxWorker
from bot.store import outbox
from bot.store.audit import AuditLog, verify_chain
from bot.store.db import Database
from bot.store.models import AuditEvent, Contact, Message, OutboxItem
from bot.store.types import utcnow
from channels.base import Channel, DeliveryResult, Failed, RetryLater, Sent, Unknown
from tests.support.outbox import (
    CHANNEL,
    Chat,
    count,
    item_by_key,
    new_chat,
    queue,
    time_passes,
    worker,
)


@pytest.fixture
async def chat(db: Database) -> Chat:
    return await new_chat(db)


async def claim(db: Database, owner: str = "worker-1", **options: Any) -> list[str]:
    """Claim every due candidate one by one, as a worker's pass does right before each send."""
    async with db.transaction() as session:
        candidates = await outbox.due_heads(session, CHANNEL, **options)
    claimed: list[str] = []
    for item in candidates:
        async with db.transaction() as session:
            if await outbox.claim(session, item.id, owner, claim_seconds=60) is not None:
                claimed.append(item.idempotency_key)
    return claimed


# --- the store ---------------------------------------------------------------------------------


async def test_enqueueing_the_same_key_twice_queues_one_item_and_one_message(
    db: Database, chat: Chat
) -> None:
    first = await queue(db, chat, "run1:reply", "hello")
    async with db.transaction() as session:
        again, created = await outbox.enqueue(
            session,
            key="run1:reply",
            conversation_id=chat.conversation_id,
            contact_id=chat.contact_id,
            channel=CHANNEL,
            recipient="ann",
            text="hello",
        )

    assert not created and again.id == first.id
    assert await count(db, OutboxItem) == 1
    assert await count(db, Message, Message.direction == "out") == 1
    assert first.message_id is not None


async def test_enqueueing_one_key_concurrently_queues_one_item_and_one_message(
    db: Database, chat: Chat
) -> None:
    items = await asyncio.gather(*(queue(db, chat, "run1:reply") for _ in range(4)))

    assert len({item.id for item in items}) == 1
    assert await count(db, OutboxItem) == 1
    assert await count(db, Message, Message.direction == "out") == 1


async def test_claiming_takes_one_item_per_conversation_oldest_first(
    db: Database, chat: Chat
) -> None:
    other = await new_chat(db, "Bob")
    await queue(db, chat, "a1")
    await queue(db, chat, "a2")
    await queue(db, other, "b1")

    assert await claim(db) == ["a1", "b1"]
    assert await claim(db) == []  # a2 waits for a1

    async with db.transaction() as session:
        await outbox.mark_sent(session, (await item_by_key(db, "a1")).id, "ext-a1")
    assert await claim(db) == ["a2"]


async def test_an_item_claimed_by_one_worker_is_not_claimed_by_another(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")

    assert await claim(db, "worker-1") == ["a1"]
    assert await claim(db, "worker-2") == []
    item = await item_by_key(db, "a1")
    assert (item.status, item.claimed_by) == ("sending", "worker-1")


async def test_workers_claiming_at_once_never_claim_the_same_item(db: Database) -> None:
    chats = [await new_chat(db, f"c{i}") for i in range(6)]
    for i, each in enumerate(chats):
        await queue(db, each, f"k{i}")

    claims = await asyncio.gather(*(claim(db, f"worker-{n}", limit=2) for n in range(4)))

    claimed = [key for keys in claims for key in keys]
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) <= 6


async def test_a_retried_item_is_not_due_until_its_delay_has_passed(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    await queue(db, chat, "a2")
    assert await claim(db) == ["a1"]
    async with db.transaction() as session:
        await outbox.mark_retry(session, (await item_by_key(db, "a1")).id, "429", delay=60)

    assert await claim(db) == []  # neither a1 (not due) nor a2 (behind a1)

    await time_passes(db, OutboxItem.idempotency_key == "a1")
    assert await claim(db) == ["a1"]
    item = await item_by_key(db, "a1")
    assert (item.attempts, item.last_error) == (1, "429")


async def test_a_backlog_waiting_on_a_retry_does_not_hold_up_other_conversations(
    db: Database, chat: Chat
) -> None:
    quiet = await new_chat(db, "Bob")
    for i in range(12):
        await queue(db, chat, f"busy{i}")
    await queue(db, quiet, "quiet")
    assert await claim(db) == ["busy0", "quiet"]
    sent, retried = await item_by_key(db, "quiet"), await item_by_key(db, "busy0")
    async with db.transaction() as session:
        await outbox.mark_sent(session, sent.id, None)
        await outbox.mark_retry(session, retried.id, "429", delay=60)
    await queue(db, quiet, "quiet-2")

    assert await claim(db, limit=2) == ["quiet-2"]


async def test_a_claim_that_expired_mid_send_becomes_unknown_and_is_never_claimed_again(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    assert await claim(db, "dead-worker") == ["a1"]
    await time_passes(db, OutboxItem.idempotency_key == "a1")

    async with db.transaction() as session:
        stale = await outbox.expire_stale_claims(session)

    assert [item.idempotency_key for item in stale] == ["a1"]
    item = await item_by_key(db, "a1")
    assert item.status == "unknown" and "dead-worker" in (item.last_error or "")
    assert await claim(db, "worker-2") == []
    async with db.transaction() as session:
        assert await outbox.expire_stale_claims(session) == []


async def test_posts_about_no_conversation_are_each_their_own_queue(
    db: Database, chat: Chat
) -> None:
    await queue(db, None, "alert-1")
    await queue(db, None, "alert-2")
    await queue(db, chat, "a1")

    assert await claim(db) == ["alert-1", "alert-2", "a1"]  # none waits for another
    await queue(db, None, "alert-3")
    assert await claim(db) == ["alert-3"]  # alert-1 and -2 are still `sending`


async def test_the_parts_of_a_long_post_about_no_conversation_go_in_order(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(outbox.TEXT_LIMITS, CHANNEL, 20)
    await queue(db, None, "report", "First paragraph.\n\nSecond paragraph.\n\nThird one.")
    await queue(db, None, "alert")

    assert await claim(db) == ["report", "alert"]  # the report's later parts wait
    async with db.transaction() as session:
        await outbox.mark_sent(session, (await item_by_key(db, "report")).id, None)
    assert await claim(db) == ["report#2"]


async def test_a_candidate_that_stopped_being_due_is_not_claimed(db: Database, chat: Chat) -> None:
    await queue(db, chat, "a1")
    async with db.transaction() as session:
        [candidate] = await outbox.due_heads(session, CHANNEL)
        await outbox.hold_back(session, {candidate.id: 60})  # another worker was paced

    async with db.transaction() as session:
        assert await outbox.claim(session, candidate.id, "worker-2", claim_seconds=60) is None
    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts) == ("pending", 0)


async def test_holding_back_an_item_another_worker_has_sent_leaves_it_sent(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    assert await claim(db, "fast-worker") == ["a1"]
    item = await item_by_key(db, "a1")
    async with db.transaction() as session:
        await outbox.mark_sent(session, item.id, "ext-a1")
        await outbox.hold_back(session, {item.id: 60})  # a slower worker's stale candidate

    assert (await item_by_key(db, "a1")).status == "sent"


# --- the worker --------------------------------------------------------------------------------


class ScriptedChannel(Channel):
    """Answers each delivery with the next scripted result (or raises it)."""

    name = CHANNEL

    def __init__(self, *results: DeliveryResult | Exception) -> None:
        self.results = list(results)
        self.delivered: list[str] = []

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        self.delivered.append(item.idempotency_key)
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


async def chain_is_intact(db: Database) -> bool:
    async with db.transaction() as session:
        _, problems = await verify_chain(session)
    return problems == []


async def test_a_sent_item_records_the_channel_id_on_the_item_and_its_message(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    channel = ScriptedChannel(Sent("tg-1"))

    assert await worker(db, channel).deliver_due() == 1

    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.external_id) == ("sent", 1, "tg-1")
    async with db.transaction() as session:
        message = await session.get(Message, item.message_id)
        events = (await session.execute(select(AuditEvent))).scalars().all()
    assert message is not None and message.external_id == "tg-1" and message.sent_at is not None
    assert [(e.kind, e.payload["result"]) for e in events] == [("delivery", "Sent")]
    assert await worker(db, channel).deliver_due() == 0
    assert await chain_is_intact(db)


async def test_retry_later_is_delivered_again_on_the_next_pass(db: Database, chat: Chat) -> None:
    await queue(db, chat, "a1")
    channel = ScriptedChannel(RetryLater("flood wait", after=0), Sent("tg-1"))
    sender = worker(db, channel)

    assert await sender.deliver_due() == 1
    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.last_error) == ("pending", 1, "flood wait")

    assert await sender.deliver_due() == 1
    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts) == ("sent", 2)
    assert channel.delivered == ["a1", "a1"]


async def test_retry_later_beyond_max_attempts_fails_the_item(db: Database, chat: Chat) -> None:
    await queue(db, chat, "a1")
    channel = ScriptedChannel(*[RetryLater("503", after=0)] * 3)
    sender = worker(db, channel, max_attempts=3)

    for _ in range(3):
        assert await sender.deliver_due() == 1
    assert await sender.deliver_due() == 0

    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.last_error) == ("failed", 3, "gave up: 503")
    assert len(channel.delivered) == 3


async def test_a_failure_that_makes_the_contact_unreachable_flags_the_contact(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")

    await worker(db, ScriptedChannel(Failed("bot was blocked", unreachable=True))).deliver_due()

    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.last_error) == ("failed", 1, "bot was blocked")
    async with db.transaction() as session:
        contact = await session.get(Contact, chat.contact_id)
    assert contact is not None and contact.unreachable


async def test_a_plain_failure_leaves_the_contact_reachable(db: Database, chat: Chat) -> None:
    await queue(db, chat, "a1")

    await worker(db, ScriptedChannel(Failed("message too long"))).deliver_due()

    assert (await item_by_key(db, "a1")).status == "failed"
    async with db.transaction() as session:
        contact = await session.get(Contact, chat.contact_id)
    assert contact is not None and not contact.unreachable


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (Unknown("timeout after sending"), "timeout after sending"),
        (ConnectionResetError("peer went away"), "ConnectionResetError: peer went away"),
    ],
    ids=["unknown", "channel-raised"],
)
async def test_an_unknown_outcome_is_never_delivered_again(
    db: Database, chat: Chat, result: DeliveryResult | Exception, error: str
) -> None:
    await queue(db, chat, "a1")
    channel = ScriptedChannel(result)
    sender = worker(db, channel)

    assert await sender.deliver_due() == 1
    assert await sender.deliver_due() == 0

    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.last_error) == ("unknown", 1, error)
    assert channel.delivered == ["a1"]


async def test_the_worker_marks_a_dead_workers_claim_unknown_and_does_not_send_it(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    assert await claim(db, "dead-worker") == ["a1"]
    await time_passes(db, OutboxItem.idempotency_key == "a1")
    channel = ScriptedChannel()

    assert await worker(db, channel).deliver_due() == 0

    assert (await item_by_key(db, "a1")).status == "unknown"
    assert channel.delivered == []
    async with db.transaction() as session:
        [event] = (await session.execute(select(AuditEvent))).scalars().all()
    assert (event.kind, event.payload["result"]) == ("delivery", "Unknown")
    assert await chain_is_intact(db)


class PacedChannel(ScriptedChannel):
    """Has no rate-limit slot for the first `busy` items it is asked about."""

    def __init__(self, busy: int, *results: DeliveryResult | Exception) -> None:
        super().__init__(*results)
        self.busy = busy

    async def pace(self, item: OutboxItem) -> float | None:
        self.busy -= 1
        return 0.0 if self.busy >= 0 else None


async def test_an_item_without_a_rate_limit_slot_is_held_back_unclaimed_and_unattempted(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    channel = PacedChannel(1, Sent("tg-1"))
    sender = worker(db, channel)

    assert await sender.deliver_due() == 0
    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts, item.claimed_by) == ("pending", 0, None)
    assert channel.delivered == []

    assert await sender.deliver_due() == 1
    item = await item_by_key(db, "a1")
    assert (item.status, item.attempts) == ("sent", 1)
    assert await count(db, AuditEvent) == 1  # the send; being paced is not worth a record


class SpacedChannel(ScriptedChannel):
    """A channel whose recipients take one message a second from all workers together; each
    worker's own `pace` has no limit, as a second process's pacing knows nothing of the first's."""

    def spacing(self, item: OutboxItem) -> float | None:
        return 1.0


async def test_a_recipient_another_worker_just_sent_to_is_held_back_until_its_spacing_passed(
    db: Database, chat: Chat
) -> None:
    await queue(db, chat, "a1")
    await queue(db, chat, "a2")
    now = [utcnow()]

    def sender(worker_id: str, channel: Channel) -> OutboxWorker:
        return OutboxWorker(db, AuditLog(), channel, worker_id=worker_id, clock=lambda: now[0])

    first, second = SpacedChannel(Sent("tg-1")), SpacedChannel(Sent("tg-2"))
    assert await sender("worker-1", first).deliver_due() == 1

    now[0] += timedelta(seconds=0.3)
    other = sender("worker-2", second)
    assert await other.deliver_due() == 0  # "a2" is due, but "ann" had a message 0.3 s ago
    item = await item_by_key(db, "a2")
    assert (item.status, item.attempts, item.claimed_by) == ("pending", 0, None)
    assert item.next_attempt_at > now[0]  # held back for the rest of the second, not retried
    assert second.delivered == []

    now[0] += timedelta(seconds=0.8)
    assert await other.deliver_due() == 1
    assert second.delivered == ["a2"]
    assert (await item_by_key(db, "a2")).status == "sent"


async def test_spacing_counts_only_messages_to_the_same_recipient(db: Database) -> None:
    async with db.transaction() as session:
        for recipient in ("ann", "bob"):
            await outbox.enqueue(
                session,
                key=recipient,
                conversation_id=None,
                contact_id=None,
                channel=CHANNEL,
                recipient=recipient,
                text="hello",
                to_contact=False,
            )
    channel = SpacedChannel(Sent("tg-1"), Sent("tg-2"))
    assert await worker(db, channel).deliver_due() == 2  # two chats: neither waits
