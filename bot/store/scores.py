"""Lead scores: the contact's current score and the history of its changes, with reasons.

The score itself is computed above the store (`agents.scoring`); here it is only kept: the
contact's `lead_score` column, which routing reads, and one `score_changes` row per change.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Contact, ScoreChange


async def latest_change(session: AsyncSession, contact_id: int) -> ScoreChange | None:
    """The contact's most recent score change, or None if it was never scored."""
    query = (
        select(ScoreChange)
        .where(ScoreChange.contact_id == contact_id)
        .order_by(ScoreChange.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def record_score(
    session: AsyncSession,
    contact: Contact,
    score: int,
    reasons: Sequence[str],
    *,
    run_id: str | None = None,
) -> ScoreChange | None:
    """Set the contact's score; a change (of the score or of its reasons) is stored with its
    reasons and returned, and None means nothing changed."""
    latest = await latest_change(session, contact.id)
    known_reasons = list(latest.reasons) if latest is not None else []
    if contact.lead_score == score and known_reasons == list(reasons):
        return None
    change = ScoreChange(
        contact_id=contact.id,
        old_score=contact.lead_score,
        new_score=score,
        reasons=list(reasons),
        run_id=run_id,
    )
    contact.lead_score = score
    session.add(change)
    await session.flush()
    return change


async def changes(session: AsyncSession, contact_id: int) -> list[ScoreChange]:
    """Every score change of the contact, oldest first."""
    query = select(ScoreChange).where(ScoreChange.contact_id == contact_id).order_by(ScoreChange.id)
    return list((await session.execute(query)).scalars())
