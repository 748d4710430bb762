"""Deals, meetings and the staff confirmations that guard closing a deal."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Contact, Deal, Meeting, PendingConfirmation
from bot.store.types import utcnow

CLOSED_STAGES = ("won", "lost")


async def open_deal(session: AsyncSession, contact_id: int) -> Deal | None:
    """The contact's most recently active deal that is not won or lost."""
    query = (
        select(Deal)
        .where(Deal.contact_id == contact_id, Deal.stage.not_in(CLOSED_STAGES))
        .order_by(Deal.last_activity_at.desc(), Deal.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def get_deal(session: AsyncSession, deal_id: int) -> Deal | None:
    return await session.get(Deal, deal_id)


async def start_deal(session: AsyncSession, contact: Contact) -> Deal:
    """A new deal for `contact`, named after them and owned by their owner."""
    deal = Deal(contact_id=contact.id, title=contact.name, owner=contact.owner)
    session.add(deal)
    await session.flush()
    return deal


async def move_stage(session: AsyncSession, deal: Deal, stage: str) -> str:
    """Put `deal` in `stage`; returns the stage it was in."""
    previous, deal.stage, deal.last_activity_at = deal.stage, stage, utcnow()
    await session.flush()
    return previous


async def book_meeting(session: AsyncSession, deal: Deal | None, **fields: Any) -> Meeting:
    """Store a meeting (the columns of `Meeting` as keywords); it counts as activity on `deal`."""
    meeting = Meeting(deal_id=deal.id if deal else None, **fields)
    session.add(meeting)
    if deal is not None:
        deal.last_activity_at = utcnow()
    await session.flush()
    return meeting


async def ask_confirmation(
    session: AsyncSession,
    *,
    key: str,
    run_id: str,
    conversation_id: int,
    action: str,
    arguments: dict[str, Any],
) -> PendingConfirmation:
    """Queue an action that staff must approve before it is carried out."""
    pending = PendingConfirmation(
        idempotency_key=key,
        run_id=run_id,
        conversation_id=conversation_id,
        action=action,
        arguments=arguments,
    )
    session.add(pending)
    await session.flush()
    return pending


async def get_confirmation(
    session: AsyncSession, confirmation_id: int
) -> PendingConfirmation | None:
    return await session.get(PendingConfirmation, confirmation_id)
