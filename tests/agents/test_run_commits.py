"""A run commits what it changed, when it changed it, and no more often than that."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from bot.store import runs
from bot.store.inbox import pending_messages
from bot.store.models import AgentRun, AuditEvent, Message, OutboxItem
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, call, turn


@pytest.fixture
def committed(harness: Harness) -> Iterator[list[list[str]]]:
    """The statements of each committed transaction, in order (only the writes)."""
    transactions: list[list[str]] = [[]]
    engine = harness.db.engine.sync_engine

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        words = sql.split(maxsplit=3)
        if words and words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            transactions[-1].append(" ".join(words[:3]).lower())

    def commit(_conn: Any) -> None:
        transactions.append([])

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    yield transactions
    event.remove(engine, "before_cursor_execute", statement)
    event.remove(engine, "commit", commit)


async def test_a_reply_that_ends_the_run_is_queued_in_the_transaction_that_ends_it(
    harness: Harness, committed: list[list[str]]
) -> None:
    harness.use_model(ScriptedModel(turn("", call("get_contact")), turn("Hello Ann!")))
    conversation_id = await harness.receive("hi")
    committed.clear()
    committed.append([])
    async with harness.db.reading() as session:
        pending = await pending_messages(session, conversation_id)
    outcome = await harness.app.runner.handle_inbound(conversation_id, pending)
    assert outcome.status == "finished"
    writes = [statements for statements in committed if statements]
    # get_contact changed nothing, so the whole run is one commit: the run row, the reply in
    # the outbox, the messages answered, the run finished and every audit record of it.
    assert len(writes) == 1
    [run_commit] = writes
    assert "insert into agent_runs" in run_commit
    assert "insert into outbox" in run_commit
    assert "update agent_runs set" in run_commit
    [reply] = await harness.rows(OutboxItem)
    assert reply.text == "Hello Ann!" and reply.run_id == outcome.run_id
    [message] = await harness.rows(Message, Message.direction == "in")
    assert message.run_id == outcome.run_id and message.handled_at is not None


async def test_a_run_whose_close_fails_queues_no_reply_and_keeps_every_record(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply and the end of the run commit together or not at all; what the run had
    held back for that commit (its row, the model calls) is written by the close after it."""
    finish_run = runs.finish_run
    calls = 0

    async def fails_once(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the close broke")
        await finish_run(*args, **kwargs)

    monkeypatch.setattr(runs, "finish_run", fails_once)
    harness.use_model(ScriptedModel(turn("Hello Ann!")))
    outcome = await harness.answer("hi")
    assert outcome.status == "handed_off" and "internal error" in outcome.reason
    assert "Hello Ann!" not in [item.text for item in await harness.rows(OutboxItem)]
    [run] = await harness.rows(AgentRun)
    assert run.status == "handed_off"
    kinds = [e.kind for e in await harness.rows(AuditEvent, AuditEvent.run_id == run.id)]
    assert kinds[0] == "run_started"
    assert "model_call" in kinds and "run_finished" in kinds
    assert "send_message" not in str(
        [e.payload for e in await harness.rows(AuditEvent, AuditEvent.kind == "tool_call")]
    )
