"""A wired app whose agent talks to a provider stub through the real adapter and SDK.

The agent names `openai` as its provider; the pool's `openai` is the real `OpenAIProvider`
pointed at a `StubServer`, so a run goes through the breaker, the adapter's retries, the SDK's
HTTP client and its parser before the engine sees anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from bot.store.models import AgentRun, AuditEvent, HandoffRecord, Message
from tests.providers.stub_server import StubServer
from tests.providers.wire import FAST, OpenAIWire, Wire
from tests.support.harness import BASE_AGENT, Harness

RETRIES = 1
"""Retries of the adapter under test: each failed call is two requests to the stub."""
QUESTION = "Which company are you with?"
"""What the offline provider asks, so a run it serves ends in a reply."""


@asynccontextmanager
async def stub(wire: Wire) -> AsyncIterator[StubServer]:
    server = StubServer(wire.route)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def stubbed_app(
    database_url: str, server: StubServer, *, request_seconds: float = 5.0, **settings: Any
) -> AsyncIterator[Harness]:
    """A started app with the `tester` agent on OpenAI; `settings` are the app's own."""
    h = Harness(database_url, default_agent="tester", run_timeout_seconds=10, **settings)
    await h.app.start()
    try:
        await h.add_agent(
            provider="openai",
            questions=[{"key": "company", "ask": QUESTION}],
            tools=[*BASE_AGENT["tools"], "record_answer"],
        )
        adapter = OpenAIWire().build(
            server.base_url, timeout=request_seconds, max_retries=RETRIES, backoff=FAST
        )
        h.app.providers.register("openai", adapter)
        yield h
    finally:
        await h.app.aclose()


async def audit(h: Harness, kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Payloads of the audit records of `kind` (of one run), oldest first."""
    where = [AuditEvent.kind == kind]
    if run_id is not None:
        where.append(AuditEvent.run_id == run_id)
    async with h.db.transaction() as session:
        rows = await session.execute(select(AuditEvent).where(*where).order_by(AuditEvent.id))
        return [row.payload for row in rows.scalars()]


async def handoff_reason(h: Harness, conversation_id: int) -> str:
    [handoff] = await h.rows(HandoffRecord, HandoffRecord.conversation_id == conversation_id)
    return str(handoff.reason)


async def assert_nothing_lost(h: Harness, conversation_id: int) -> AgentRun:
    """Every inbound message of the conversation was answered by a run that ended with a
    recorded reason; the run is returned."""
    inbound = await h.rows(
        Message, Message.conversation_id == conversation_id, Message.direction == "in"
    )
    assert inbound and all(m.handled_at is not None and m.run_id for m in inbound)
    [run] = await h.rows(AgentRun, AgentRun.id == inbound[-1].run_id)
    assert run.status in ("finished", "handed_off") and run.stop_reason
    return run
