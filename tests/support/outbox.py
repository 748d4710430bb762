"""Outbox helpers for tests about delivery: conversations, queued items, scripted channels."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from bot.app.delivery import OutboxWorker
from bot.core.backoff import Backoff
from bot.store import leases, outbox
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.models import Contact, Conversation, Lease, OutboxItem
from bot.store.types import utcnow
from channels.base import Channel, DeliveryResult, Sent

CHANNEL = "fake"


@dataclass
class Chat:
    contact_id: int
    conversation_id: int


async def new_chat(db: Database, name: str = "Ann") -> Chat:
    async with db.transaction() as session:
        contact = Contact(name=name)
        session.add(contact)
        await session.flush()
        conversation = Conversation(contact_id=contact.id, channel=CHANNEL)
        session.add(conversation)
        await session.flush()
        return Chat(contact.id, conversation.id)


async def queue(db: Database, chat: Chat | None, key: str, text: str = "hello") -> OutboxItem:
    """Queue a message to `chat`'s contact; with no chat, a post about no conversation."""
    async with db.transaction() as session:
        item, _ = await outbox.enqueue(
            session,
            key=key,
            conversation_id=chat.conversation_id if chat else None,
            contact_id=chat.contact_id if chat else None,
            channel=CHANNEL,
            recipient="ann",
            text=text,
            to_contact=chat is not None,
        )
        return item


async def item_by_key(db: Database, key: str) -> OutboxItem:
    async with db.transaction() as session:
        item = await outbox.by_key(session, key)
    assert item is not None
    return item


async def statuses(db: Database, *keys: str) -> dict[str, str]:
    return {key: (await item_by_key(db, key)).status for key in keys}


async def time_passes(db: Database, *where: Any) -> None:
    """Move retry times and claims into the past, as if the clock had run on."""
    past = utcnow() - timedelta(seconds=1)
    async with db.transaction() as session:
        await session.execute(
            update(OutboxItem).where(*where).values(next_attempt_at=past, claimed_until=past)
        )


async def heartbeats_stop(db: Database, owner: str) -> None:
    """The worker `owner` died: its leases lapse (their expiry passes unrenewed)."""
    past = utcnow() - timedelta(seconds=1)
    async with db.transaction() as session:
        await session.execute(update(Lease).where(leases.owned_by(owner)).values(expires_at=past))


async def count(db: Database, model: type[Any], *where: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def worker(
    db: Database,
    channel: Channel,
    *,
    max_attempts: int = 3,
    worker_id: str = "worker-1",
    lease_seconds: float | None = None,
) -> OutboxWorker:
    return OutboxWorker(
        db,
        AuditLog(),
        channel,
        worker_id=worker_id,
        retry=Backoff(max_attempts=max_attempts),
        lease_seconds=lease_seconds,
    )


class GatedChannel(Channel):
    """Sends at once, except where a gate holds an item until `release` is set.

    `hold_pace` items wait for their rate-limit slot (nothing sent yet); `hold_send` items
    have their request out and wait for the answer.
    """

    name = CHANNEL

    def __init__(self, *, hold_pace: Iterable[str] = (), hold_send: Iterable[str] = ()) -> None:
        self.hold_pace, self.hold_send = set(hold_pace), set(hold_send)
        self.release = asyncio.Event()
        self.started: list[str] = []
        """Keys whose request has started, in order."""

    async def pace(self, item: OutboxItem) -> float | None:
        if item.idempotency_key in self.hold_pace:
            await self.release.wait()
        return None

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        self.started.append(item.idempotency_key)
        if item.idempotency_key in self.hold_send:
            await self.release.wait()
        return Sent(f"ext-{item.idempotency_key}")
