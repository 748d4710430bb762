"""Drafts: what an agent wrote that waits for a person to approve, edit or reject.

A draft is written once per key (the run that drafted it, or the research row), so a retried
run or import finds the draft it already wrote instead of writing a second one. Deciding is a
compare-and-set on `status`: of two staff members pressing Approve at once, one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import Draft, StaffPost
from bot.store.types import utcnow

KINDS = ("reply", "outreach")
STATUSES = ("pending", "approved", "edited", "rejected")
SENT = ("approved", "edited")


async def add_draft(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    agent: str,
    contact_id: int,
    channel: str,
    text: str,
    reason: str,
    conversation_id: int | None = None,
    run_id: str | None = None,
    question: str = "",
    subject: str | None = None,
    citations: Sequence[dict[str, Any]] = (),
    sources: Sequence[str] = (),
    confidence: float | None = None,
) -> tuple[Draft, bool]:
    """Store a draft under `key`; (draft, created). A repeated key returns the first draft."""
    if kind not in KINDS:
        raise ValueError(f"a draft is one of {KINDS}, not {kind!r}")
    existing = await by_key(session, key)
    if existing is not None:
        return existing, False
    draft = Draft(
        key=key,
        kind=kind,
        status="pending",
        agent=agent,
        run_id=run_id,
        contact_id=contact_id,
        conversation_id=conversation_id,
        channel=channel,
        question=question,
        text=text,
        subject=subject,
        reason=reason,
        citations=list(citations),
        sources=list(sources),
        confidence=confidence,
    )
    try:
        async with session.begin_nested():
            session.add(draft)
    except IntegrityError:
        # Another process wrote the same key first (two workers, one research row).
        found = await by_key(session, key)
        if found is None:
            raise
        return found, False
    return draft, True


async def by_key(session: AsyncSession, key: str) -> Draft | None:
    return (await session.execute(select(Draft).where(Draft.key == key))).scalar_one_or_none()


async def get_draft(session: AsyncSession, draft_id: int) -> Draft | None:
    return await session.get(Draft, draft_id)


async def list_drafts(
    session: AsyncSession,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[Draft]:
    """Drafts, newest first, of one status and kind if given."""
    query = select(Draft).order_by(Draft.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Draft.status == status)
    if kind is not None:
        query = query.where(Draft.kind == kind)
    return list((await session.execute(query)).scalars())


async def settle(
    session: AsyncSession,
    draft: Draft,
    status: str,
    *,
    decided_by: str,
    final_text: str | None = None,
) -> bool:
    """Move a pending draft to `status`; False (and nothing changed) if it was decided
    already, here or by a concurrent transaction."""
    if status not in STATUSES or status == "pending":
        raise ValueError(f"a decision is one of {STATUSES[1:]}, not {status!r}")
    decided_at = utcnow()
    result = await session.execute(
        update(Draft)
        .where(Draft.id == draft.id, Draft.status == "pending")
        .values(status=status, decided_by=decided_by, decided_at=decided_at, final_text=final_text)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(draft)
        return False
    draft.status, draft.decided_by, draft.decided_at = status, decided_by, decided_at
    draft.final_text = final_text
    return True


async def mark_saved(session: AsyncSession, draft: Draft, article_id: int) -> None:
    draft.article_id = article_id
    await session.flush()


async def draft_of_post(session: AsyncSession, chat_id: int, message_id: int) -> Draft | None:
    """The draft a staff-group post of ours shows, if it shows one."""
    post = await session.get(StaffPost, (chat_id, message_id))
    if post is None or post.draft_id is None:
        return None
    return await session.get(Draft, post.draft_id)
