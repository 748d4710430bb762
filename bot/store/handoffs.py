"""Handoffs: the record of a conversation passed to people, and which conversation staff mean."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Conversation, HandoffRecord


async def record_handoff(
    session: AsyncSession, *, conversation_id: int, run_id: str | None, reason: str, summary: str
) -> HandoffRecord:
    handoff = HandoffRecord(
        conversation_id=conversation_id, run_id=run_id, reason=reason, summary=summary
    )
    session.add(handoff)
    await session.flush()
    return handoff


async def latest_conversation(session: AsyncSession, contact_id: int) -> Conversation | None:
    """The contact's open conversation (handed-off first), else their most recent one."""
    query = (
        select(Conversation)
        .where(Conversation.contact_id == contact_id)
        .order_by((Conversation.state == "closed").asc(), Conversation.updated_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()
