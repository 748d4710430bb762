"""Recording inbound messages exactly once, and handing them to runs in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.contacts import Identity, resolve_contact
from bot.store.conversations import open_conversation
from bot.store.models import Contact, Conversation, Message
from bot.store.types import utcnow


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from a contact, normalized by its channel."""

    identity: Identity
    external_id: str
    """Unique per channel (Telegram `chat:message`, email Message-ID); the dedupe key."""
    text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    sent_at: datetime | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where a new inbound message landed."""

    message: Message
    contact: Contact
    conversation: Conversation


async def is_known(session: AsyncSession, channel: str, external_id: str) -> bool:
    query = select(Message.id).where(Message.channel == channel, Message.external_id == external_id)
    return (await session.execute(query)).first() is not None


async def record_inbound(session: AsyncSession, inbound: InboundMessage) -> Recorded | None:
    """Store `inbound` unless this channel id was seen before; None for a duplicate."""
    channel = inbound.identity.channel
    if await is_known(session, channel, inbound.external_id):
        return None
    contact = await resolve_contact(session, inbound.identity)
    conversation = await open_conversation(session, contact.id, channel, inbound.subject)
    message = Message(
        conversation_id=conversation.id,
        contact_id=contact.id,
        direction="in",
        author="contact",
        channel=channel,
        external_id=inbound.external_id,
        text=inbound.text,
        attachments=inbound.attachments,
        meta=inbound.meta,
        sent_at=inbound.sent_at,
    )
    try:
        async with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return None  # another worker stored the same message a moment ago
    conversation.last_message_at = message.created_at
    return Recorded(message, contact, conversation)


async def pending_messages(session: AsyncSession, conversation_id: int) -> list[Message]:
    """Inbound messages of the conversation no run has handled yet, oldest first."""
    query = (
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == "in",
            Message.handled_at.is_(None),
        )
        .order_by(Message.id)
    )
    return list((await session.execute(query)).scalars())


async def mark_handled(session: AsyncSession, message_ids: list[int], run_id: str | None) -> None:
    if message_ids:
        await session.execute(
            update(Message)
            .where(Message.id.in_(message_ids))
            .values(handled_at=utcnow(), run_id=run_id)
        )


async def conversations_with_pending(session: AsyncSession, limit: int = 100) -> list[int]:
    """Conversations that have unhandled inbound messages, longest-waiting first."""
    query = (
        select(Message.conversation_id)
        .where(Message.direction == "in", Message.handled_at.is_(None))
        .group_by(Message.conversation_id)
        .order_by(func.min(Message.id))
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def recent_messages(
    session: AsyncSession, conversation_id: int, limit: int = 20
) -> list[Message]:
    """The last `limit` messages of a conversation, oldest first."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(query)).scalars().all()))
