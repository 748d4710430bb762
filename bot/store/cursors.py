"""Channel resume points (last Telegram update id, IMAP UIDVALIDITY and UID)."""

from __future__ import annotations

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
