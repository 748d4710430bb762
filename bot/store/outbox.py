"""The outbox: every outbound message is written here first, then delivered by a worker.

An item's states:

- `pending`: waiting; due once `next_attempt_at` has passed and every earlier item of its
  conversation has left `pending`/`sending` (a post about no conversation waits only for the
  earlier parts of its own split text).
- `sending`: claimed by one worker right before that item's own request, in a transaction of
  its own, never earlier: an item is never `sending` while it waits for a rate-limit slot, a
  connection or other items. So a `sending` item's request may have reached the channel.
- `sent`: the channel accepted it; recorded in its own transaction as soon as that is known.
- back to `pending` with a later `next_attempt_at`: a transient failure (an attempt), or no
  rate-limit slot (`hold_back`, no attempt, and the item never left `pending`).
- `failed`: refused for good, or too many transient failures.
- `unknown`: the outcome may be either. The channel could not tell, or the worker stopped
  mid-send: its claim ran out (`claimed_until`) or its sender lease lapsed without heartbeats.
  Never retried without a person, because resending could deliver the message twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.store.models import Lease, Message, OutboxItem
from bot.store.types import utcnow


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    conversation_id: int | None,
    contact_id: int | None,
    channel: str,
    recipient: str,
    text: str,
    author: str = "agent",
    run_id: str | None = None,
    meta: dict[str, Any] | None = None,
    to_contact: bool = True,
    automatic: bool = False,
) -> tuple[OutboxItem, bool]:
    """Queue a message under idempotency `key`; (item, created). A repeated key is a no-op.

    A text longer than the channel allows becomes several items, sent in order, each with a
    key of its own (`key`, `key#2`, ...). With `to_contact` the text is also recorded as an
    outbound message of the conversation (staff-group posts are not). An `automatic` message
    answers nothing the contact wrote: the proactive rules are checked before it is sent.
    """
    existing = await by_key(session, key)
    if existing is not None:
        return existing, False
    message = None
    if to_contact:
        if conversation_id is None or contact_id is None:
            raise ValueError("a message to a contact belongs to a conversation")
        message = Message(
            conversation_id=conversation_id,
            contact_id=contact_id,
            direction="out",
            author=author,
            channel=channel,
            text=text,
            meta=meta or {},
            run_id=run_id,
        )
    parts = split_text(text, TEXT_LIMITS.get(channel))
    items = [
        OutboxItem(
            idempotency_key=key if n == 1 else f"{key}#{n}",
            conversation_id=conversation_id,
            contact_id=contact_id,
            channel=channel,
            recipient=recipient,
            author=author,
            text=part,
            meta=meta or {},
            run_id=run_id,
            automatic=automatic,
        )
        for n, part in enumerate(parts, start=1)
    ]
    try:
        async with session.begin_nested():
            if message is not None:
                session.add(message)
                await session.flush()
            for item in items:
                item.message_id = message.id if message is not None else None
                session.add(item)
            if conversation_id is None and len(items) > 1:
                await _chain_parts(session, items)
    except IntegrityError:
        existing = await by_key(session, key)
        if existing is None:
            raise
        return existing, False
    return items[0], True


async def _chain_parts(session: AsyncSession, items: list[OutboxItem]) -> None:
    """Put a split post about no conversation in one queue, that of its first part, so its
    parts arrive in order as a conversation's messages do (see `due_heads`)."""
    await session.flush()
    for item in items[1:]:
        item.meta = {**item.meta, PART_OF: items[0].id}


PART_OF = "part_of"
"""Meta key: the first part's id, on the later parts of a split post about no conversation."""

TEXT_LIMITS: dict[str, int] = {}
"""Longest text one message may carry, per channel name. Each channel declares its own
(`Channel.text_limit`); the app enters them here when it adds the channel, so that texts are
split when they are queued and every part gets a key of its own."""


def limit_text(channel: str, limit: int | None) -> None:
    """Split texts queued for `channel` at `limit` characters (None: never)."""
    if limit is None:
        TEXT_LIMITS.pop(channel, None)
    else:
        TEXT_LIMITS[channel] = limit


def split_text(text: str, limit: int | None) -> list[str]:
    """Split into parts of at most `limit` characters at the strongest natural break.

    Prefers a paragraph break, then a line break, a sentence end, a space; each must leave the
    part at least half full. Hard-cuts only a text with no break at all.
    """
    if limit is None or len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = next(
            (window.rfind(sep) + len(sep) for sep in _BREAKS if window.rfind(sep) > limit // 2),
            limit,
        )
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", " ")


async def by_key(session: AsyncSession, key: str) -> OutboxItem | None:
    query = select(OutboxItem).where(OutboxItem.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


async def join_waiting(
    session: AsyncSession,
    *,
    channel: str,
    conversation_id: int,
    text: str,
    queued_before: datetime,
    longest: int,
    meta: dict[str, Any],
) -> bool:
    """Add `text`, as a new line, to the last post of the conversation on `channel` if it is
    a joinable one (`meta.joinable`) that has waited since before `queued_before` and stays
    within `longest` characters; its meta becomes `meta`. False when there is none such.

    One conditional statement, with the text joined in SQL: a claim (or another join) that
    commits first is seen, never overwritten.
    """
    last = (
        select(func.max(OutboxItem.id))
        .where(
            OutboxItem.channel == channel,
            OutboxItem.conversation_id == conversation_id,
            OutboxItem.status.in_(("pending", "sending")),
        )
        .scalar_subquery()
    )
    joined = await session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == last,
            OutboxItem.status == "pending",
            OutboxItem.created_at < queued_before,
            OutboxItem.meta["joinable"].as_boolean(),
            func.length(OutboxItem.text) + len(text) + 1 <= longest,
        )
        .values(text=OutboxItem.text + "\n" + text, meta=meta)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(joined, "rowcount", 0))


async def due_heads(
    session: AsyncSession,
    channel: str,
    *,
    limit: int = 50,
    now: datetime | None = None,
    first_kinds: Sequence[str] = (),
) -> list[OutboxItem]:
    """Items of `channel` that may be sent now, oldest first (those of `first_kinds` before
    the rest): only read, nothing is claimed.

    Only each conversation's oldest unsent item may go, so a conversation's messages arrive in
    the order they were written; each post about no conversation is a queue of its own (with
    the parts of its text, if it was split).
    Several workers may read the same heads: `claim` decides which one sends each.
    """
    # Selecting heads in SQL means a long backlog in one conversation cannot crowd out the
    # others. A post about no conversation is grouped by its own -id (never one shared queue of
    # all NULLs), together with the later parts of its split text.
    first_part = func.coalesce(OutboxItem.meta[PART_OF].as_integer(), OutboxItem.id)
    queue = func.coalesce(OutboxItem.conversation_id, -first_part)
    heads = (
        select(func.min(OutboxItem.id))
        .where(OutboxItem.channel == channel, OutboxItem.status.in_(("pending", "sending")))
        .group_by(queue)
    )
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.id.in_(heads),
            OutboxItem.status == "pending",
            OutboxItem.next_attempt_at <= (now or utcnow()),
        )
        .order_by(*_first(first_kinds), OutboxItem.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


def _first(kinds: Sequence[str]) -> list[ColumnElement[int]]:
    if not kinds:
        return []
    return [case((OutboxItem.meta["kind"].as_string().in_(kinds), 0), else_=1)]


async def claim(
    session: AsyncSession,
    item_id: int,
    owner: str,
    *,
    claim_seconds: float,
    now: datetime | None = None,
    spacing: float | None = None,
) -> OutboxItem | None:
    """Mark the item `sending` for `owner`, right before its request; None if it is not due.

    The update is conditional, so of two workers holding the same candidate exactly one
    claims it; the other finds it sent, claimed, or held back to a later time meanwhile.
    With `spacing`, it is not due either while a request to its recipient on its channel
    left less than that many seconds ago (`wait_for_spacing` says how long is left).
    """
    now = now or utcnow()
    due = [
        OutboxItem.id == item_id,
        OutboxItem.status == "pending",
        OutboxItem.next_attempt_at <= now,
    ]
    if spacing is not None:
        due.append(~_requested_for_recipient_since(now - timedelta(seconds=spacing)))
    claimed = await session.scalars(
        update(OutboxItem)
        .where(*due)
        .values(
            status="sending",
            claimed_by=owner,
            claimed_until=now + timedelta(seconds=claim_seconds),
            claimed_at=now,
        )
        .returning(OutboxItem)  # the claimed row itself: no second statement to read it
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return claimed.first()


_EARLIER = aliased(OutboxItem, name="earlier")
"""Made once: an alias made per claim cost more than the claim's statement (a profile)."""


def _requested_for_recipient_since(since: datetime) -> ColumnElement[bool]:
    """A request to this item's recipient, on its channel, left after `since`."""
    return (
        select(_EARLIER.id)
        .where(
            _EARLIER.channel == OutboxItem.channel,
            _EARLIER.recipient == OutboxItem.recipient,
            _EARLIER.claimed_at > since,
        )
        .exists()
    )


async def wait_for_spacing(
    session: AsyncSession, item: OutboxItem, spacing: float, now: datetime
) -> float:
    """Seconds until `item` may go to its recipient `spacing` after the last request that
    left for it; 0 when it may go now."""
    last = await session.scalar(
        select(func.max(OutboxItem.claimed_at)).where(
            OutboxItem.channel == item.channel, OutboxItem.recipient == item.recipient
        )
    )
    if last is None:
        return 0.0
    return max(0.0, (last + timedelta(seconds=spacing) - now).total_seconds())


async def release_claim(session: AsyncSession, item_id: int, owner: str) -> None:
    """Give back `owner`'s claim of an item whose request never left: pending again."""
    await session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.status == "sending",
            OutboxItem.claimed_by == owner,
        )
        .values(status="pending", claimed_by=None, claimed_until=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )


async def hold_back(session: AsyncSession, waits: dict[int, float]) -> None:
    """No rate-limit slot: make each still-pending item due after its wait. Not an attempt.

    Conditional on `pending`, so a stale candidate cannot touch an item another worker has
    claimed or sent meanwhile; and it only ever moves `next_attempt_at` later.
    """
    now = utcnow()
    for item_id, delay in waits.items():
        until = now + timedelta(seconds=delay)
        await session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item_id,
                OutboxItem.status == "pending",
                OutboxItem.next_attempt_at < until,
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )


def sender_lease(channel: str, owner: str) -> str:
    """The lease `owner` holds while its sends on `channel` are in flight (see leases.py)."""
    return f"outbox:{channel}:{owner}"


async def mark_sent(
    session: AsyncSession, item_id: int, external_id: str | None, now: datetime | None = None
) -> None:
    now = now or utcnow()
    marked = await session.execute(
        update(OutboxItem)
        # Not when sent already: written again after a commit whose answer was lost.
        .where(OutboxItem.id == item_id, OutboxItem.status != "sent")
        .values(
            status="sent",
            sent_at=now,
            external_id=external_id,
            attempts=OutboxItem.attempts + 1,
        )
        .returning(OutboxItem.message_id)
        .execution_options(synchronize_session=False)
    )
    row = marked.first()
    if row is not None and row.message_id is not None:
        # A split text is one message; it takes the channel id of its first part.
        await session.execute(
            update(Message)
            .where(Message.id == row.message_id, Message.external_id.is_(None))
            .values(sent_at=now, external_id=external_id)
        )


async def mark_retry(
    session: AsyncSession, item_id: int, error: str, delay: float, *, counts: bool = True
) -> None:
    """Make a `sending` item due again after `delay`; a throttled send (`counts=False`) is no
    attempt. An item meanwhile declared `unknown` stays so: staff were told it would not be
    resent automatically."""
    item = await session.get(OutboxItem, item_id)
    if item is not None and item.status == "sending":
        item.status, item.last_error = "pending", error
        item.attempts += 1 if counts else 0
        item.next_attempt_at = utcnow() + timedelta(seconds=delay)
        item.claimed_by = item.claimed_until = None


async def mark_failed(session: AsyncSession, item_id: int, error: str) -> None:
    await _give_up(session, item_id, "failed", error)


async def mark_unknown(session: AsyncSession, item_id: int, error: str) -> None:
    await _give_up(session, item_id, "unknown", error)


async def _give_up(session: AsyncSession, item_id: int, status: str, error: str) -> None:
    """End the item's delivery; its conversation message says so, for the agent to see."""
    item = await session.get(OutboxItem, item_id)
    if item is None:
        return
    item.status, item.last_error = status, error
    item.attempts += 1
    await note_delivery_problem(session, item, status, error)


async def note_delivery_problem(
    session: AsyncSession, item: OutboxItem, status: str, error: str
) -> None:
    """Mark the conversation message of `item` as not (or maybe not) delivered."""
    if item.message_id is None:
        return
    message = await session.get(Message, item.message_id)
    if message is not None:
        message.meta = {**(message.meta or {}), "delivery": status, "delivery_error": error[:300]}


def _stale(now: datetime) -> ColumnElement[bool]:
    """An item in flight whose sender's claim, or sender lease, has run out."""
    lapsed = (
        select(Lease.name)
        .where(
            # sender_lease(channel, claimed_by), in SQL
            Lease.name == literal("outbox:") + OutboxItem.channel + ":" + OutboxItem.claimed_by,
            Lease.owner == OutboxItem.claimed_by,
            Lease.expires_at < now,
        )
        .exists()
    )
    return and_(OutboxItem.status == "sending", or_(OutboxItem.claimed_until < now, lapsed))


async def any_stale_claims(session: AsyncSession) -> bool:
    """Whether `expire_stale_claims` would find anything (a read: no lock, no commit)."""
    found = await session.scalar(select(OutboxItem.id).where(_stale(utcnow())).limit(1))
    return found is not None


async def expire_stale_claims(session: AsyncSession) -> list[OutboxItem]:
    """Items whose sender vanished mid-send: mark them `unknown`, never resend blindly.

    A sender is gone when its claim has run out, or sooner, when the lease it holds while its
    sends are in flight has lapsed: a live worker's heartbeat renews that lease every third of
    its time. A sender that holds no such lease is judged by its claim alone.
    """
    stale = list((await session.execute(select(OutboxItem).where(_stale(utcnow())))).scalars())
    for item in stale:
        item.status = "unknown"
        item.last_error = f"sender {item.claimed_by} stopped mid-send; outcome unknown"
        await note_delivery_problem(session, item, "unknown", item.last_error)
    return stale


async def find_item(session: AsyncSession, item_id: int) -> OutboxItem | None:
    """The outbox item with this id, if there is one."""
    return await session.get(OutboxItem, item_id)


async def items_sent_as(
    session: AsyncSession, channel: str, external_ids: Sequence[str]
) -> list[OutboxItem]:
    """Items of `channel` recorded as sent under any of these channel ids."""
    query = select(OutboxItem).where(
        OutboxItem.channel == channel, OutboxItem.external_id.in_(external_ids)
    )
    return list((await session.execute(query)).scalars())


async def count_recent_by_authors(
    session: AsyncSession,
    *,
    channel: str,
    contact_id: int | None,
    authors: Sequence[str],
    since: datetime,
    excluding: int,
) -> int:
    """How many items `authors` wrote to the contact on `channel` went out since `since`,
    leaving out item `excluding`. An `unknown` item created since then counts: it may have
    gone out."""
    count = await session.scalar(
        select(func.count(OutboxItem.id)).where(
            OutboxItem.channel == channel,
            OutboxItem.contact_id == contact_id,
            OutboxItem.author.in_(authors),
            OutboxItem.id != excluding,
            or_(
                and_(OutboxItem.status == "sent", OutboxItem.sent_at >= since),
                and_(OutboxItem.status == "unknown", OutboxItem.created_at >= since),
            ),
        )
    )
    return count or 0
