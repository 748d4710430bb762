"""Channel resume points and single-holder leases, kept in `channel_cursors`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import ChannelCursor
from bot.store.types import utcnow


async def load(session: AsyncSession, key: str) -> str | None:
    row = await session.get(ChannelCursor, key)
    return row.value if row is not None else None


async def save(session: AsyncSession, key: str, value: str) -> None:
    row = await session.get(ChannelCursor, key)
    if row is None:
        session.add(ChannelCursor(key=key, value=value))
    else:
        row.value, row.updated_at = value, utcnow()


async def try_hold(session: AsyncSession, key: str, owner: str, seconds: float) -> bool:
    """Hold the lease `key` (e.g. the one Telegram poller) for `seconds`; False if taken."""
    now = utcnow()
    value = f"{owner}|{(now + timedelta(seconds=seconds)).isoformat()}"
    row = await session.get(ChannelCursor, key, with_for_update=True)
    if row is None:
        try:
            async with session.begin_nested():
                session.add(ChannelCursor(key=key, value=value))
        except IntegrityError:
            return False
        return True
    holder, _, until = row.value.partition("|")
    if holder != owner and until and datetime.fromisoformat(until) > now:
        return False
    await session.execute(
        update(ChannelCursor).where(ChannelCursor.key == key).values(value=value, updated_at=now)
    )
    return True


async def release(session: AsyncSession, key: str, owner: str) -> None:
    """Give up the lease `key` if `owner` holds it, so another worker need not wait it out."""
    row = await session.get(ChannelCursor, key, with_for_update=True)
    if row is not None and row.value.partition("|")[0] == owner:
        row.value, row.updated_at = f"{owner}|{utcnow().isoformat()}", utcnow()
