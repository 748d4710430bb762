"""Contact events: stored once per idempotency key, and counted for proactive conditions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import ContactEvent


async def record_event(
    session: AsyncSession,
    *,
    contact_id: int,
    type: str,
    data: dict[str, Any],
    key: str | None,
    source: str,
    occurred_at: datetime,
) -> tuple[ContactEvent, bool]:
    """Store an event; (event, created). An event whose `key` was seen before is not stored
    again: the first one is returned with created False."""
    if key is not None:
        known = await _by_key(session, key)
        if known is not None:
            return known, False
    event = ContactEvent(
        key=key,
        contact_id=contact_id,
        type=type,
        data=data,
        source=source,
        occurred_at=occurred_at,
    )
    try:
        async with session.begin_nested():
            session.add(event)
            await session.flush()
    except IntegrityError:
        # The same key arrived at the same moment on another connection: theirs stands.
        known = await _by_key(session, key) if key is not None else None
        if known is None:
            raise
        return known, False
    return event, True


async def _by_key(session: AsyncSession, key: str) -> ContactEvent | None:
    query = select(ContactEvent).where(ContactEvent.key == key)
    return (await session.execute(query)).scalar_one_or_none()


async def count_events(
    session: AsyncSession, contact_id: int, types: Iterable[str], since: datetime
) -> dict[str, int]:
    """How many events of each type the contact had after `since` (0 for none)."""
    wanted = sorted(set(types))
    if not wanted:
        return {}
    query = (
        select(ContactEvent.type, func.count())
        .where(
            ContactEvent.contact_id == contact_id,
            ContactEvent.type.in_(wanted),
            ContactEvent.occurred_at > since,
        )
        .group_by(ContactEvent.type)
    )
    counted = {kind: int(n) for kind, n in (await session.execute(query)).all()}
    return {kind: counted.get(kind, 0) for kind in wanted}
