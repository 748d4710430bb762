"""The audit trail is append-only and hash-chained per conversation, and sealed: any edit or
deletion is found, and rows not sealed yet are reported as such."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bot.core.redact import Redactor
from bot.store.audit import AuditLog, ChainProblem, seal, verify_chain, verify_trail
from bot.store.db import Database
from bot.store.models import AuditChain, AuditEvent


async def append_events(
    db: Database, n: int, audit: AuditLog | None = None, conversation_id: int | None = None
) -> None:
    audit = audit or AuditLog()
    for i in range(n):
        async with db.transaction() as session:
            await audit.append(
                session,
                "note",
                {"n": i, "text": f"event {i}"},
                actor="test",
                run_id="run-1",
                conversation_id=conversation_id,
            )


async def seal_now(db: Database) -> None:
    async with db.transaction() as session:
        await seal(session)


async def verify(db: Database) -> tuple[int, list[ChainProblem]]:
    async with db.transaction() as session:
        return await verify_chain(session)


async def tamper(db: Database, *statements: str) -> None:
    """Run SQL as someone with direct database access, after removing the append-only guard."""
    drop_guard = (
        [
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ]
        if db.is_sqlite
        else ["DROP TRIGGER audit_events_append_only ON audit_events"]
    )
    async with db.transaction() as session:
        for statement in [*drop_guard, *statements]:
            await session.execute(text(statement))


async def test_an_untouched_chain_verifies_intact(db: Database) -> None:
    await append_events(db, 7)

    count, problems = await verify(db)

    assert (count, problems) == (7, [])


async def test_an_empty_chain_verifies_intact(db: Database) -> None:
    assert await verify(db) == (0, [])


async def test_a_row_whose_payload_was_edited_is_reported_changed(db: Database) -> None:
    await append_events(db, 5)

    await tamper(db, """UPDATE audit_events SET payload = '{"n": 99}' WHERE id = 3""")

    _, problems = await verify(db)
    assert [str(p) for p in problems] == ["system row 3: content was changed after it was written"]


async def test_a_deleted_middle_row_is_reported_missing(db: Database) -> None:
    await append_events(db, 5)

    await tamper(db, "DELETE FROM audit_events WHERE id = 3")

    count, problems = await verify(db)
    assert count == 4
    assert [str(p) for p in problems] == ["system row 4: row 3 is missing (deleted)"]


async def test_rows_deleted_from_the_end_are_reported_by_the_head(db: Database) -> None:
    await append_events(db, 5)

    await tamper(db, "DELETE FROM audit_events WHERE id >= 4")

    count, problems = await verify(db)
    assert count == 3
    assert len(problems) == 1
    assert "ends at row 3 but its tip says 5" in str(problems[0])


def _rehash(event: AuditEvent, payload: dict[str, object]) -> str:
    """The forger's hash: the same recipe as the real one, over the forged content."""
    body = json.dumps(
        [
            event.chain,
            event.seq,
            event.created_at.isoformat(),
            event.run_id,
            event.conversation_id,
            event.actor,
            event.kind,
            payload,
            event.prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def forge(db: Database, event_id: int) -> None:
    """Edit a row and recompute its own hash so that the row, alone, looks genuine."""
    async with db.transaction() as session:
        event = await session.get(AuditEvent, event_id)
        assert event is not None
        payload = {"n": 99, "text": "nothing happened"}
        forged_hash = _rehash(event, payload)
    await tamper(
        db,
        f"UPDATE audit_events SET payload = '{json.dumps(payload)}', hash = '{forged_hash}' "
        f"WHERE id = {event_id}",
    )


async def test_an_edit_with_a_recomputed_hash_is_caught_by_the_next_rows_link(
    db: Database,
) -> None:
    await append_events(db, 5)

    await forge(db, 3)

    _, problems = await verify(db)
    assert [str(p) for p in problems] == ["system row 4: link to the previous row is broken"]


async def test_an_edit_of_the_last_row_with_a_recomputed_hash_is_caught_by_the_head(
    db: Database,
) -> None:
    await append_events(db, 5)

    await forge(db, 5)

    _, problems = await verify(db)
    assert len(problems) == 1 and "tip" in str(problems[0])


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET payload = '{}' WHERE id = 1",
        "DELETE FROM audit_events WHERE id = 1",
    ],
    ids=["update", "delete"],
)
async def test_the_database_refuses_to_update_or_delete_audit_rows(
    db: Database, statement: str
) -> None:
    await append_events(db, 2)

    with pytest.raises(DBAPIError, match="append-only"):
        async with db.transaction() as session:
            await session.execute(text(statement))

    assert await verify(db) == (2, [])


async def test_concurrent_appends_keep_each_chain_intact_and_contiguous(db: Database) -> None:
    audit = AuditLog()

    async def append_one(i: int) -> None:
        async with db.transaction() as session:
            await audit.append(session, "note", {"n": i}, actor=f"task-{i}", conversation_id=i % 4)

    await asyncio.gather(*(append_one(i) for i in range(20)))

    count, problems = await verify(db)
    assert (count, problems) == (20, [])
    async with db.transaction() as session:
        rows = (await session.execute(select(AuditEvent.chain, AuditEvent.seq))).all()
        tips = {c.key: c.last_seq for c in (await session.execute(select(AuditChain))).scalars()}
    for n in range(4):
        chain = f"conversation:{n}"
        assert sorted(seq for c, seq in rows if c == chain) == [1, 2, 3, 4, 5]
        assert tips[chain] == 5


async def test_a_tampered_conversation_does_not_cast_doubt_on_the_others(db: Database) -> None:
    await append_events(db, 3, conversation_id=1)
    await append_events(db, 3, conversation_id=2)

    await tamper(db, "DELETE FROM audit_events WHERE chain = 'conversation:2' AND seq = 2")

    _, problems = await verify(db)
    assert [str(p) for p in problems] == ["conversation:2 row 3: row 2 is missing (deleted)"]


async def test_rows_written_since_the_last_seal_are_reported_as_not_sealed(db: Database) -> None:
    await append_events(db, 3, conversation_id=1)
    await seal_now(db)
    await append_events(db, 2, conversation_id=1)
    await append_events(db, 1)

    async with db.transaction() as session:
        found = await verify_trail(session)
    assert (found.rows, found.problems, found.unsealed) == (6, [], 3)
    await seal_now(db)
    async with db.transaction() as session:
        assert (await verify_trail(session)).unsealed == 0


async def test_a_conversation_deleted_whole_with_its_tip_is_caught_by_the_seal(
    db: Database,
) -> None:
    await append_events(db, 3, conversation_id=1)
    await append_events(db, 3, conversation_id=2)
    await seal_now(db)

    await tamper(
        db,
        "DELETE FROM audit_events WHERE chain = 'conversation:2'",
        "DELETE FROM audit_chains WHERE key = 'conversation:2'",
    )

    _, problems = await verify(db)
    reported = " ".join(str(p) for p in problems)
    assert "conversation:2" in reported and "sealed at row 3" in reported
    assert "conversation:1" not in reported


async def test_rows_cut_from_the_end_with_the_tip_rewound_are_caught_by_the_seal(
    db: Database,
) -> None:
    await append_events(db, 5, conversation_id=1)
    await seal_now(db)
    async with db.transaction() as session:
        third = (await session.execute(select(AuditEvent).where(AuditEvent.seq == 3))).scalar_one()

    await tamper(
        db,
        "DELETE FROM audit_events WHERE seq > 3",
        f"UPDATE audit_chains SET last_seq = 3, last_hash = '{third.hash}'",
    )

    _, problems = await verify(db)
    assert [str(p) for p in problems] == [
        "conversation:1 row 4: sealed at row 5 but ends at row 3: rows were deleted"
    ]


async def test_configured_secrets_never_reach_stored_payloads_or_actor(db: Database) -> None:
    secret = "hunter2-database-password"
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
    audit = AuditLog(Redactor([secret]))
    async with db.transaction() as session:
        await audit.append(
            session,
            "note",
            {
                "text": f"connecting with {secret}",
                "nested": [{"token": token}, ("tuple", secret)],
            },
            actor=f"staff:{secret}",
        )

    async with db.transaction() as session:
        raw = (await session.execute(text("SELECT actor, payload FROM audit_events"))).one()
    stored = f"{raw[0]} {raw[1]}"
    assert secret not in stored and token not in stored
    assert stored.count("[redacted]") == 4
    assert await verify(db) == (1, [])


async def test_sealing_passes_over_a_chain_a_writer_holds_instead_of_waiting_for_it(
    db: Database,
) -> None:
    """Found by `bench.crash` on PostgreSQL: the sealer waited for a chain a run's transaction
    held, while that transaction waited for a chain the sealer had just sealed: a deadlock.
    (SQLite has one writer at a time, so there the sealer simply waits its turn.)"""
    if db.is_sqlite:
        pytest.skip("two writers at once are PostgreSQL's")
    await append_events(db, 2, conversation_id=1)
    await append_events(db, 2, conversation_id=2)
    audit = AuditLog()
    async with db.transaction() as writer:  # appends to conversation 1 and holds its chain
        await audit.append(writer, "note", {"n": 9}, actor="test", conversation_id=1)
        async with db.transaction() as session:
            record = await asyncio.wait_for(seal(session), timeout=5)
        assert record is not None and set(record.heads) == {"conversation:2"}
    await seal_now(db)  # the writer is done: its chain is sealed next time
    async with db.transaction() as session:
        assert (await verify_trail(session)).unsealed == 0
