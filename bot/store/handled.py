"""Exactly-once markers for updates that are not stored messages (commands, buttons, events)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.dialect import insert_ignoring_conflicts
from bot.store.models import HandledUpdate


async def first_time(session: AsyncSession, key: str) -> bool:
    """Mark `key` handled in this transaction; False if it was handled before.

    Call it in the same transaction as the update's effects: if that transaction rolls back,
    so does the mark, and a replay applies the update then.
    """
    statement = insert_ignoring_conflicts(session, HandledUpdate, ["key"]).values(key=key)
    result = await session.execute(statement.returning(HandledUpdate.key))
    return result.first() is not None
