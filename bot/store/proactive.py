"""What the proactive rules read and write: automatic sends, opt-outs, the breaker switch.

The rules themselves are in `bot/desk/proactive.py`; this is their SQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.dialect import insert_ignoring_conflicts
from bot.store.models import Contact, Message, OutboxItem, Switch
from bot.store.types import utcnow

BREAKER = "proactive"


async def automatic_sent_since(
    session: AsyncSession,
    since: datetime,
    contact_id: int | None = None,
    *,
    until: datetime | None = None,
) -> int:
    """Automatic messages sent after `since` (and up to `until`), to one contact or anyone."""
    sent = and_(OutboxItem.status == "sent", OutboxItem.sent_at > since)
    if until is not None:
        sent = and_(sent, OutboxItem.sent_at <= until)
        query = select(func.count()).where(OutboxItem.automatic.is_(True), sent)
    else:
        # In flight now counts too: it may arrive, and its outcome is not recorded yet.
        in_flight = OutboxItem.status == "sending"
        query = select(func.count()).where(OutboxItem.automatic.is_(True), or_(sent, in_flight))
    if contact_id is not None:
        query = query.where(OutboxItem.contact_id == contact_id)
    return int((await session.execute(query)).scalar_one())


async def breaker(session: AsyncSession) -> Switch | None:
    """The breaker's row, None while it has never tripped."""
    return await session.get(Switch, BREAKER)


async def lock_breaker(session: AsyncSession) -> Switch:
    """The breaker's row, locked until the transaction ends: automatic sends are checked
    against the daily limit one at a time, in every worker."""
    await session.execute(
        insert_ignoring_conflicts(session, Switch, ["name"]).values(
            name=BREAKER, tripped=False, reason="", changed_by="", changed_at=utcnow()
        )
    )
    switch = await session.get(Switch, BREAKER, with_for_update=True, populate_existing=True)
    assert switch is not None
    return switch


async def trip_breaker(session: AsyncSession, reason: str, now: datetime) -> bool:
    """Trip the breaker; False if it was tripped already."""
    switch = await session.get(Switch, BREAKER, with_for_update=True)
    if switch is None:
        session.add(Switch(name=BREAKER, tripped=True, reason=reason, changed_by="breaker"))
        await session.flush()
        return True
    if switch.tripped:
        return False
    switch.tripped, switch.reason, switch.changed_by, switch.changed_at = (
        True,
        reason,
        "breaker",
        now,
    )
    return True


async def reset_breaker(session: AsyncSession, by: str, now: datetime) -> bool:
    """A person resumes proactive sending: held messages are due again. False if not tripped."""
    switch = await session.get(Switch, BREAKER, with_for_update=True)
    if switch is None or not switch.tripped:
        return False
    switch.tripped, switch.changed_by, switch.changed_at = False, by, now
    switch.reason = f"resumed by {by}"
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.status == "held")
        .values(status="pending", next_attempt_at=now)
    )
    return True


async def hold(session: AsyncSession, item_id: int, why: str) -> None:
    """Keep an automatic message back until the breaker is reset."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == "pending")
        .values(status="held", last_error=why)
    )


async def cancel(session: AsyncSession, item_id: int, why: str) -> None:
    """An automatic message that must not go out any more (a rule said so at send time)."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == "pending")
        .values(status="cancelled", last_error=why)
    )


async def postpone(session: AsyncSession, item_id: int, until: datetime, why: str) -> None:
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == "pending")
        .values(next_attempt_at=until, last_error=why)
    )


async def opt_out(session: AsyncSession, contact_id: int, now: datetime) -> bool:
    """Record "stop" for good; False if the contact had opted out before."""
    result = await session.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.opted_out_at.is_(None))
        .values(opted_out_at=now)
        .returning(Contact.id)
    )
    return result.first() is not None


async def wrote_since(session: AsyncSession, contact_id: int, since: datetime) -> bool:
    query = select(Message.id).where(
        Message.contact_id == contact_id,
        Message.direction == "in",
        Message.created_at > since,
    )
    return (await session.execute(query.limit(1))).first() is not None


async def wrote_after(session: AsyncSession, contact_id: int, message_id: int) -> bool:
    """The contact wrote after our message `message_id` was recorded (ids only grow, so this
    holds whatever clock each row was written with)."""
    query = select(Message.id).where(
        Message.contact_id == contact_id, Message.direction == "in", Message.id > message_id
    )
    return (await session.execute(query.limit(1))).first() is not None


async def last_message_at(session: AsyncSession, contact_id: int) -> datetime | None:
    """The newest message either way; None if there was none."""
    query = select(func.max(Message.created_at)).where(Message.contact_id == contact_id)
    value: datetime | None = (await session.execute(query)).scalar_one_or_none()
    return value


async def contacts_page(session: AsyncSession, *, after_id: int, page_size: int) -> list[Contact]:
    """Reachable contacts who have not opted out, by id, a page at a time."""
    query = (
        select(Contact)
        .where(
            Contact.id > after_id,
            Contact.unreachable.is_(False),
            Contact.opted_out_at.is_(None),
        )
        .order_by(Contact.id)
        .limit(page_size)
    )
    return list((await session.execute(query)).scalars())
