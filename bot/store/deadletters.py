"""Dead letters: input a channel could not parse or store, kept whole beside the error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import NotFoundError
from bot.store.dialect import dialect_insert
from bot.store.models import DeadLetter
from bot.store.types import utcnow

STATUSES = ("new", "queued", "retried", "failed_again")
"""new: set aside; queued: a person asked for a retry; retried: stored on retry;
failed_again: the retry failed too (the newest error is kept)."""


@dataclass(frozen=True, slots=True)
class Kept:
    """The dead letter, and whether this is the first time that input was set aside."""

    letter: DeadLetter
    new: bool


def fingerprint(source: str, payload: bytes) -> str:
    return hashlib.sha256(source.encode() + b"\0" + payload).hexdigest()


async def keep(
    session: AsyncSession, *, source: str, kind: str, ref: str | None, payload: bytes, error: str
) -> Kept:
    """Set `payload` aside; the same input seen again only counts up `seen`."""
    key = fingerprint(source, payload)
    insert = dialect_insert(session, DeadLetter).values(
        source=source,
        kind=kind,
        ref=(ref or "")[:300] or None,
        fingerprint=key,
        payload=payload,
        error=error[:4000],
        status="new",
        seen=1,
        created_at=utcnow(),
    )
    created = await session.execute(
        insert.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(DeadLetter.id)
    )
    new = created.first() is not None
    if not new:
        retrying = DeadLetter.status.in_(("queued", "retried"))
        await session.execute(
            update(DeadLetter)
            .where(DeadLetter.fingerprint == key)
            .values(
                seen=DeadLetter.seen + 1,
                # Set aside again while being retried: the retry failed, with this error.
                status=case((retrying, "failed_again"), else_=DeadLetter.status),
                error=case((retrying, error[:4000]), else_=DeadLetter.error),
                retried_at=case((retrying, utcnow()), else_=DeadLetter.retried_at),
            )
            .execution_options(synchronize_session=False)
        )
    query = select(DeadLetter).where(DeadLetter.fingerprint == key)
    letter = (await session.execute(query.execution_options(populate_existing=True))).scalar_one()
    return Kept(letter, new)


async def get(session: AsyncSession, letter_id: int) -> DeadLetter:
    letter = await session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFoundError(f"no dead letter with id {letter_id}")
    return letter


async def listing(
    session: AsyncSession, *, status: str | None = None, limit: int = 50
) -> list[DeadLetter]:
    """The newest dead letters first."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if status is not None:
        query = query.where(DeadLetter.status == status)
    return list((await session.execute(query)).scalars())


async def queue_retry(session: AsyncSession, letter_id: int) -> DeadLetter:
    """Ask the running channel to feed the letter in again (it may parse now)."""
    letter = await get(session, letter_id)
    if letter.status == "retried":
        raise NotFoundError(f"dead letter {letter_id} was already stored on an earlier retry")
    letter.status = "queued"
    return letter


async def queued(session: AsyncSession, source: str, limit: int = 20) -> list[DeadLetter]:
    query = (
        select(DeadLetter)
        .where(DeadLetter.source == source, DeadLetter.status == "queued")
        .order_by(DeadLetter.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def begin_retry(session: AsyncSession, letter_id: int) -> None:
    """Mark a queued letter retried before it is fed in again; if it is set aside once more,
    `keep` turns it to `failed_again` with the new error."""
    await session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == letter_id, DeadLetter.status == "queued")
        .values(status="retried", retried_at=utcnow())
        .execution_options(synchronize_session=False)
    )
