"""Recording inbound messages exactly once, and handing them to runs in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.contacts import Identity, resolve_contacts
from bot.store.dialect import insert_ignoring_conflicts
from bot.store.models import Contact, Conversation, Message
from bot.store.types import utcnow
from bot.store.wakeups import cancel_on_reply

log = logging.getLogger("bot.store")
BATCH_ATTEMPTS = 3
"""A batch that lost a race with a concurrent transaction is redone, at most this often."""


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


def storable(text: str) -> str:
    """`text` as both databases can hold it: PostgreSQL's text type refuses NUL characters."""
    return text.replace("\x00", "\ufffd")


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
    """Store `inbound` unless this channel id was seen before; None for a duplicate.

    A batch of one (`record_inbound_batch`): there is one inbound path, whatever the channel,
    and this only loads what it stored for a caller that wants the rows."""
    stored = await record_inbound_batch(session, [inbound])
    if not stored:
        return None
    [one] = stored
    # Refreshed: the batch writes with Core, past whatever this session has loaded already.
    fresh = {"populate_existing": True}
    message = await session.get_one(Message, one.message_id, execution_options=fresh)
    contact = await session.get_one(Contact, one.contact_id, execution_options=fresh)
    conversation = await session.get_one(Conversation, one.conversation_id, execution_options=fresh)
    return Recorded(message, contact, conversation)


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a new inbound message of a batch landed, by row id."""

    inbound: InboundMessage
    message_id: int
    contact_id: int
    conversation_id: int


async def record_inbound_batch(
    session: AsyncSession, inbounds: Sequence[InboundMessage]
) -> list[Stored]:
    """Store the messages not seen before, exactly as `record_inbound` on each in turn would.

    Returns the new ones in input order. It takes a handful of statements whatever the batch
    size (meant for a channel's batch: Telegram hands over at most 100 updates at a time).
    When a concurrent transaction creates some of the same contacts first, the batch is rolled
    back to its savepoint and redone, and then finds theirs. It writes with Core statements:
    contacts or conversations already loaded in `session` are not refreshed.
    """
    if not inbounds:
        return []
    for attempt in range(1, BATCH_ATTEMPTS):
        try:
            async with session.begin_nested():
                return await _record_batch(session, inbounds)
        except IntegrityError as error:
            # The first line names the constraint; the rest would put people's details in logs.
            reason = str(error.orig).splitlines()[0]
            log.info("inbound batch lost a race (attempt %s, %s); redoing it", attempt, reason)
    return await _record_batch(session, inbounds)


async def _record_batch(session: AsyncSession, inbounds: Sequence[InboundMessage]) -> list[Stored]:
    fresh = await _unseen(session, inbounds)
    if not fresh:
        return []
    contact_ids = await resolve_contacts(session, [inbound.identity for inbound in fresh])
    conversation_ids = await _open_conversations(session, fresh, contact_ids)
    placed = list(zip(fresh, contact_ids, conversation_ids, strict=True))
    now = utcnow()
    stored = await _insert_messages(session, placed, now)
    touched = {s.conversation_id for s in stored}
    if touched:
        await session.execute(
            update(Conversation).where(Conversation.id.in_(touched)).values(last_message_at=now)
        )
        # A reply makes pending follow-ups moot (one statement per batch).
        await cancel_on_reply(session, [s.contact_id for s in stored], now)
    return stored


def _key(inbound: InboundMessage) -> tuple[str, str]:
    return (inbound.identity.channel, inbound.external_id)


async def _unseen(
    session: AsyncSession, inbounds: Sequence[InboundMessage]
) -> list[InboundMessage]:
    """The messages whose channel id is neither stored nor taken by an earlier one, in order."""
    first: dict[tuple[str, str], InboundMessage] = {}
    for inbound in inbounds:
        first.setdefault(_key(inbound), inbound)
    query = select(Message.channel, Message.external_id).where(
        tuple_(Message.channel, Message.external_id).in_(list(first))
    )
    stored = {(channel, external_id) for channel, external_id in await session.execute(query)}
    return [inbound for key, inbound in first.items() if key not in stored]


async def _open_conversations(
    session: AsyncSession, inbounds: list[InboundMessage], contact_ids: list[int]
) -> list[int]:
    """Each message's open conversation (contact and channel), started where there is none.

    A started conversation takes the subject of the first message that needed it.
    """
    keys = [
        (contact_id, i.identity.channel)
        for i, contact_id in zip(inbounds, contact_ids, strict=True)
    ]
    subjects: dict[tuple[int, str], str | None] = {}
    for key, inbound in zip(keys, inbounds, strict=True):
        subjects.setdefault(key, inbound.subject)
    found = await _find_open(session, list(subjects))
    missing = {key: subject for key, subject in subjects.items() if key not in found}
    if missing:
        found |= await _start_conversations(session, missing)
    return [found[key] for key in keys]


async def _find_open(
    session: AsyncSession, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    query = select(Conversation.contact_id, Conversation.channel, Conversation.id).where(
        tuple_(Conversation.contact_id, Conversation.channel).in_(keys),
        Conversation.state != "closed",
    )
    rows = await session.execute(query)
    return {(contact_id, channel): id_ for contact_id, channel, id_ in rows}


async def _start_conversations(
    session: AsyncSession, subjects: dict[tuple[int, str], str | None]
) -> dict[tuple[int, str], int]:
    """Open a conversation for each (contact, channel); one opened concurrently is reused.

    The partial unique index `uq_conversations_open` allows one open conversation per contact
    and channel; a concurrent transaction's wins and is selected afterwards.
    """
    rows = [
        {"contact_id": contact_id, "channel": channel, "subject": subjects[contact_id, channel]}
        for contact_id, channel in sorted(subjects)  # a fixed lock order across transactions
    ]
    # SQLite accepts the partial index as the conflict target only with its condition as written.
    open_only = text("state != 'closed'")
    statement = insert_ignoring_conflicts(
        session, Conversation, ["contact_id", "channel"], open_only
    ).returning(Conversation.contact_id, Conversation.channel, Conversation.id)
    result = await session.execute(statement, rows)
    started = {(contact_id, channel): id_ for contact_id, channel, id_ in result}
    raced = [key for key in subjects if key not in started]
    if raced:
        started |= await _find_open(session, raced)
    return started


async def _insert_messages(
    session: AsyncSession, placed: list[tuple[InboundMessage, int, int]], now: datetime
) -> list[Stored]:
    """Insert (message, contact id, conversation id) rows in order; skip ones stored meanwhile."""
    rows = [
        {
            "conversation_id": conversation_id,
            "contact_id": contact_id,
            "direction": "in",
            "author": "contact",
            "channel": inbound.identity.channel,
            "external_id": inbound.external_id,
            "text": storable(inbound.text),
            "attachments": inbound.attachments,
            "meta": inbound.meta,
            "sent_at": inbound.sent_at,
            "created_at": now,
        }
        for inbound, contact_id, conversation_id in placed
    ]
    # Rows are numbered in VALUES order, so ids follow input order; RETURNING's order is not
    # promised, hence matching by channel id.
    statement = insert_ignoring_conflicts(session, Message, ["channel", "external_id"]).returning(
        Message.channel, Message.external_id, Message.id
    )
    ids = {
        (channel, external_id): id_
        for channel, external_id, id_ in await session.execute(statement, rows)
    }
    return [
        Stored(inbound, ids[_key(inbound)], contact_id, conversation_id)
        for inbound, contact_id, conversation_id in placed
        if _key(inbound) in ids
    ]


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


async def run_history(
    session: AsyncSession, conversation_id: int, answering: Sequence[int], limit: int = 20
) -> list[Message]:
    """What a run answering the inbound messages `answering` may see, oldest first, with the
    messages it answers last.

    The run's watermark is the newest of them: no inbound message after it, and no other
    inbound message still waiting (one recorded while the run started is answered by the next
    run, which is the one that marks it handled). So a run sees exactly the messages it
    answers. Everything we said is shown, though: a reply an earlier run queued after the
    contact wrote these messages (two messages at once, answered one by one) is part of the
    conversation, and a run that missed it would ask its question again. The messages being
    answered come last, as the turn the model replies to.
    """
    if not answering:
        return await recent_messages(session, conversation_id, limit)
    watermark = max(answering)
    query = (
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            or_(
                Message.direction != "in",
                and_(
                    Message.id <= watermark,
                    or_(Message.handled_at.is_not(None), Message.id.in_(list(answering))),
                ),
            ),
        )
        .order_by(Message.id.desc())
        .limit(limit)
    )
    newest_first = (await session.execute(query)).scalars().all()
    answered = set(answering)
    seen = [m for m in reversed(newest_first) if m.id not in answered]
    return seen + [m for m in reversed(newest_first) if m.id in answered]


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


async def latest_inbound(
    session: AsyncSession, conversation_id: int, channel: str, limit: int = 10
) -> list[Message]:
    """The conversation's last `limit` messages from the contact on `channel`, newest first."""
    query = (
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == "in",
            Message.channel == channel,
        )
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
