"""Read-only views over what happened after a point: for harnesses that judge the bot from
the store (`crmbot redteam`), not for the hot path."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import AuditEvent, Meeting, OutboxItem


@dataclass(frozen=True, slots=True)
class Mark:
    """The newest outbox item and audit event at some moment."""

    outbox: int
    audit: int


async def mark(session: AsyncSession) -> Mark:
    outbox_id = await session.scalar(select(func.coalesce(func.max(OutboxItem.id), 0)))
    audit_id = await session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))
    return Mark(int(outbox_id or 0), int(audit_id or 0))


async def outbox_after(session: AsyncSession, since: Mark) -> list[OutboxItem]:
    query = select(OutboxItem).where(OutboxItem.id > since.outbox).order_by(OutboxItem.id)
    return list((await session.execute(query)).scalars())


async def audit_after(session: AsyncSession, since: Mark) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.id > since.audit).order_by(AuditEvent.id)
    return list((await session.execute(query)).scalars())


async def meetings_of(session: AsyncSession, contact_id: int) -> list[Meeting]:
    query = select(Meeting).where(Meeting.contact_id == contact_id).order_by(Meeting.id)
    return list((await session.execute(query)).scalars())
