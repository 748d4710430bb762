"""The audit trail: append-only rows, hash-chained per conversation, sealed periodically.

Each row's hash covers its content and the previous row's hash in its chain (`conversation:ID`,
or `system` for events about no conversation). Appending locks only that chain's tip row, so
conversations never queue behind each other, yet a conversation's events are in the order
they happened. A sealer (`AuditSealer`, one worker at a time) regularly writes an
append-only, itself hash-chained record of the chains' tips.

`verify_chain` finds an edited row (its hash no longer matches), a deleted row (a gap in its
chain's sequence, a broken link), rows deleted from the end of a chain (the tip or a seal
says there were more) and a chain deleted whole (a seal names it); rows written since the
last seal are reported as not sealed yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.redact import Redactor
from bot.store.db import Database
from bot.store.dialect import dialect_insert, skipping_locked
from bot.store.leases import Lease
from bot.store.models import AuditChain, AuditEvent, AuditSeal
from bot.store.types import utcnow

log = logging.getLogger("bot.audit")
GENESIS = "0" * 64
LEGACY_CHAIN = "global"
"""Rows written before per-conversation chains; their hashes cover `id` instead of chain and
sequence, exactly as they were written."""
SYSTEM_CHAIN = "system"
SEAL_EVERY_SECONDS = 60.0
_BATCH = 1000


def chain_of(conversation_id: int | None) -> str:
    return f"conversation:{conversation_id}" if conversation_id is not None else SYSTEM_CHAIN


def _canonical(value: Any) -> Any:
    """The JSON form stored and hashed, so what is verified is exactly what was written."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _hash(parts: list[Any]) -> str:
    body = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _digest(event: AuditEvent) -> str:
    where: list[Any] = [event.id] if event.chain == LEGACY_CHAIN else [event.chain, event.seq]
    return _hash(
        [
            *where,
            event.created_at.isoformat(),
            event.run_id,
            event.conversation_id,
            event.actor,
            event.kind,
            event.payload,
            event.prev_hash,
        ]
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit record to append."""

    kind: str
    payload: dict[str, Any]
    actor: str
    run_id: str | None = None
    conversation_id: int | None = None


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
    ) -> None:
        await self.append_many(session, [Entry(kind, payload, actor, run_id, conversation_id)])

    async def append_many(self, session: AsyncSession, entries: Sequence[Entry]) -> None:
        """Append `entries` in order, taking each chain's tip once for all of its entries."""
        by_chain: dict[str, list[Entry]] = {}
        for entry in entries:
            by_chain.setdefault(chain_of(entry.conversation_id), []).append(entry)
        for chain in sorted(by_chain):  # one lock order across transactions: no deadlocks
            await self._append_chain(session, chain, by_chain[chain])

    async def _append_chain(self, session: AsyncSession, chain: str, entries: list[Entry]) -> None:
        last_seq, prev_hash = await _take_tip(session, chain, len(entries))
        now = utcnow()
        rows = []
        for offset, entry in enumerate(entries):
            event = AuditEvent(
                created_at=now,
                run_id=entry.run_id,
                conversation_id=entry.conversation_id,
                actor=self.redactor.text(entry.actor),
                kind=entry.kind,
                payload=_canonical(self.redactor.value(entry.payload)),
                chain=chain,
                seq=last_seq - len(entries) + 1 + offset,
                prev_hash=prev_hash,
            )
            event.hash = prev_hash = _digest(event)
            rows.append({column: getattr(event, column) for column in _WRITTEN})
        # A Core insert: the rows are never read back in this transaction, and the ORM's
        # unit of work around them cost more than the statement (bench.telegram profile).
        await session.execute(_INSERT_EVENTS, rows)
        await session.execute(
            update(AuditChain).where(AuditChain.key == chain).values(last_hash=prev_hash)
        )


_EVENTS = cast(Table, AuditEvent.__table__)
_WRITTEN = tuple(column.name for column in _EVENTS.columns if column.name != "id")
_INSERT_EVENTS = insert(_EVENTS)


async def _take_tip(session: AsyncSession, chain: str, count: int) -> tuple[int, str]:
    """Advance `chain` by `count` rows; (its new last seq, the hash the first new row links
    to). The row lock taken here is held until the caller's transaction ends."""
    insert = dialect_insert(session, AuditChain).values(
        key=chain, last_seq=count, last_hash=GENESIS, sealed_seq=0
    )
    statement = insert.on_conflict_do_update(
        index_elements=["key"], set_={"last_seq": AuditChain.last_seq + count}
    ).returning(AuditChain.last_seq, AuditChain.last_hash)
    last_seq, last_hash = (await session.execute(statement)).one()
    return int(last_seq), str(last_hash)


# Sealing


def _seal_hash(seal: AuditSeal) -> str:
    return _hash([seal.id, seal.created_at.isoformat(), seal.heads, seal.prev_hash])


async def seal(session: AsyncSession) -> AuditSeal | None:
    """Record the tips of the chains that grew since the last seal; None if none did."""
    # Chains a writer holds are sealed next time: waiting for them would deadlock with a
    # transaction that appends to two chains (found by `bench.crash` on PostgreSQL).
    grown_chains = select(AuditChain).where(AuditChain.last_seq > AuditChain.sealed_seq)
    grown = (
        (await session.execute(skipping_locked(session, grown_chains.order_by(AuditChain.key))))
        .scalars()
        .all()
    )
    if not grown:
        return None
    last = (
        await session.execute(select(AuditSeal).order_by(AuditSeal.id.desc()).limit(1))
    ).scalar_one_or_none()
    record = AuditSeal(
        id=(last.id + 1) if last else 1,
        created_at=utcnow(),
        heads={c.key: [c.last_seq, c.last_hash] for c in grown},
        prev_hash=last.hash if last else GENESIS,
    )
    record.hash = _seal_hash(record)
    session.add(record)
    for chain in grown:
        await session.execute(
            update(AuditChain)
            .where(AuditChain.key == chain.key)
            .values(sealed_seq=chain.last_seq)
            .execution_options(synchronize_session=False)
        )
    return record


class AuditSealer:
    """Seals the chains every `every` seconds; one worker at a time (a lease)."""

    def __init__(self, db: Database, worker_id: str, lease_seconds: float, every: float) -> None:
        self.db, self.every = db, every
        self.lease = Lease(db, "audit:sealer", worker_id, lease_seconds)

    async def once(self) -> AuditSeal | None:
        async with self.db.transaction() as session:
            return await seal(session)

    async def run_forever(self) -> None:
        await self.lease.run(self._step)

    async def _step(self) -> None:
        await self.once()
        await asyncio.sleep(self.every)


# Verifying


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One place where the trail does not hold."""

    event_id: int
    problem: str
    chain: str = ""

    def __str__(self) -> str:
        where = f"{self.chain} " if self.chain and self.chain != LEGACY_CHAIN else ""
        return f"{where}row {self.event_id}: {self.problem}"


@dataclass
class Verification:
    """What `verify_chain` found."""

    rows: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    unsealed: int = 0
    """Rows written since the last seal (tamper-evident by their links, not yet by a seal)."""


@dataclass
class _Walk:
    chain: str
    seq: int = 0
    hash: str = GENESIS
    last_id: int = 0


async def _events(session: AsyncSession) -> AsyncIterator[AuditEvent]:
    after: tuple[str, int] = ("", 0)
    while True:
        query = (
            select(AuditEvent)
            .where(
                (AuditEvent.chain > after[0])
                | ((AuditEvent.chain == after[0]) & (AuditEvent.seq > after[1]))
            )
            .order_by(AuditEvent.chain, AuditEvent.seq)
            .limit(_BATCH)
        )
        batch = (await session.execute(query)).scalars().all()
        if not batch:
            return
        for event in batch:
            yield event
        after = (batch[-1].chain, batch[-1].seq)
        session.expunge_all()


def _check_row(walk: _Walk, event: AuditEvent, problems: list[ChainProblem]) -> None:
    here = event.id if event.chain == LEGACY_CHAIN else event.seq

    def report(problem: str) -> None:
        problems.append(ChainProblem(here, problem, event.chain))

    if event.seq != walk.seq + 1:
        first, last = walk.seq + 1, event.seq - 1
        report(
            f"rows {first}..{last} are missing (deleted)"
            if last > first
            else f"row {first} is missing (deleted)"
        )
    elif event.prev_hash != walk.hash:
        report("link to the previous row is broken")
    if _digest(event) != event.hash:
        report("content was changed after it was written")
    if event.chain not in (LEGACY_CHAIN, chain_of(event.conversation_id)):
        report(f"belongs to {chain_of(event.conversation_id)}, not this chain")
    walk.seq, walk.hash, walk.last_id = event.seq, event.hash, event.id


async def verify_chain(session: AsyncSession) -> tuple[int, list[ChainProblem]]:
    """(rows checked, problems found) over the whole trail."""
    found = await verify_trail(session)
    return found.rows, found.problems


async def verify_trail(session: AsyncSession) -> Verification:
    """Walk every chain, its tip and the seals."""
    found = Verification()
    sealed = await _sealed_tips(session, found.problems)
    walks: dict[str, _Walk] = {}
    async for event in _events(session):
        found.rows += 1
        walk = walks.setdefault(event.chain, _Walk(event.chain))
        _check_row(walk, event, found.problems)
        tip = sealed.get(event.chain)
        if tip is not None and event.seq == tip[0] and event.hash != tip[1]:
            found.problems.append(
                ChainProblem(event.seq, "differs from what was sealed", event.chain)
            )
    tips = {c.key: c for c in (await session.execute(select(AuditChain))).scalars()}
    for key in sorted(set(walks) | set(tips) | set(sealed)):
        _check_end(key, walks.get(key, _Walk(key)), tips.get(key), sealed.get(key), found)
    return found


def _check_end(
    key: str,
    walk: _Walk,
    tip: AuditChain | None,
    sealed: tuple[int, str] | None,
    found: Verification,
) -> None:
    def report(problem: str) -> None:
        found.problems.append(ChainProblem(walk.seq + 1, problem, key))

    if tip is None:
        report("the chain's tip row is missing")
    elif tip.last_seq != walk.seq or tip.last_hash != walk.hash:
        report(
            f"the chain ends at row {walk.seq} but its tip says {tip.last_seq}: "
            "rows were deleted from the end"
            if tip.last_seq > walk.seq
            else f"the chain ends at row {walk.seq} but its tip says {tip.last_seq}"
        )
    if sealed is not None and sealed[0] > walk.seq:
        report(f"sealed at row {sealed[0]} but ends at row {walk.seq}: rows were deleted")
    found.unsealed += max(0, walk.seq - (sealed[0] if sealed else 0))


async def _sealed_tips(
    session: AsyncSession, problems: list[ChainProblem]
) -> dict[str, tuple[int, str]]:
    """Each chain's newest sealed tip, after checking the seals' own chain."""
    tips: dict[str, tuple[int, str]] = {}
    expected_id, prev = 1, GENESIS
    for record in (await session.execute(select(AuditSeal).order_by(AuditSeal.id))).scalars():
        if (
            record.id != expected_id
            or record.prev_hash != prev
            or _seal_hash(record) != record.hash
        ):
            problems.append(ChainProblem(record.id, "seal was changed or removed", "seals"))
        for key, (seq, digest) in record.heads.items():
            tips[key] = (int(seq), str(digest))
        expected_id, prev = record.id + 1, record.hash
    return tips


async def run_events(session: AsyncSession, run_id: str) -> list[AuditEvent]:
    """Every audit event of the run, in the order they were written."""
    query = select(AuditEvent).where(AuditEvent.run_id == run_id).order_by(AuditEvent.id)
    return list((await session.execute(query)).scalars().all())
