"""The audit trail: an append-only table whose rows are chained by SHA-256.

Each row's hash covers its content and the previous row's hash, and the `audit_head` row
holds the tip, so `verify` finds an edited row (its hash no longer matches), a deleted row in
the middle (a gap in ids, a broken link) and rows deleted from the end (the head disagrees).
Appending updates the head row first, which serializes appends across workers and databases.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.redact import Redactor
from bot.store.models import AuditEvent, AuditHead
from bot.store.types import utcnow

GENESIS = "0" * 64
_BATCH = 1000


def _canonical(value: Any) -> Any:
    """The JSON form stored and hashed, so what is verified is exactly what was written."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _digest(event: AuditEvent) -> str:
    body = json.dumps(
        [
            event.id,
            event.created_at.isoformat(),
            event.run_id,
            event.conversation_id,
            event.actor,
            event.kind,
            event.payload,
            event.prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    """Appends redacted, chained audit events in the caller's transaction."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()

    async def append(
        self,
        session: AsyncSession,
        kind: str,
        payload: dict[str, Any],
        *,
        actor: str,
        run_id: str | None = None,
        conversation_id: int | None = None,
    ) -> AuditEvent:
        bump = (
            update(AuditHead)
            .where(AuditHead.id == 1)
            .values(last_id=AuditHead.last_id + 1)
            .returning(AuditHead.last_id, AuditHead.last_hash)
        )
        new_id, prev_hash = (await session.execute(bump)).one()
        event = AuditEvent(
            id=new_id,
            created_at=utcnow(),
            run_id=run_id,
            conversation_id=conversation_id,
            actor=self.redactor.text(actor),
            kind=kind,
            payload=_canonical(self.redactor.value(payload)),
            prev_hash=prev_hash,
        )
        event.hash = _digest(event)
        session.add(event)
        await session.flush()
        await session.execute(
            update(AuditHead).where(AuditHead.id == 1).values(last_hash=event.hash)
        )
        return event


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One place where the chain does not hold."""

    event_id: int
    problem: str

    def __str__(self) -> str:
        return f"row {self.event_id}: {self.problem}"


async def _events(session: AsyncSession) -> AsyncIterator[AuditEvent]:
    last = 0
    while True:
        query = select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
        batch = (await session.execute(query.limit(_BATCH))).scalars().all()
        if not batch:
            return
        for event in batch:
            yield event
        last = batch[-1].id
        session.expunge_all()


async def verify_chain(session: AsyncSession) -> tuple[int, list[ChainProblem]]:
    """Walk the whole chain; return (rows checked, problems found)."""
    problems: list[ChainProblem] = []
    expected_id, prev_hash, count = 1, GENESIS, 0
    async for event in _events(session):
        count += 1
        if event.id != expected_id:
            problems.append(
                ChainProblem(event.id, f"rows {expected_id}..{event.id - 1} are missing (deleted)")
            )
        elif event.prev_hash != prev_hash:
            problems.append(ChainProblem(event.id, "link to the previous row is broken"))
        if _digest(event) != event.hash:
            problems.append(ChainProblem(event.id, "content was changed after it was written"))
        expected_id, prev_hash = event.id + 1, event.hash
    head = await session.get(AuditHead, 1)
    if head is None:
        problems.append(ChainProblem(0, "the chain head row is missing"))
    elif head.last_id != expected_id - 1 or head.last_hash != prev_hash:
        problems.append(
            ChainProblem(
                expected_id,
                f"the chain ends at row {expected_id - 1} but the head says {head.last_id}: "
                "rows were deleted from the end",
            )
        )
    return count, problems
