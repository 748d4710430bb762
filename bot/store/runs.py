"""Agent runs: opening and closing them, their tool invocations, their spend, and what a run
already did, read back from its records when a stopped worker's run resumes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import AgentRun, AuditEvent, ToolInvocation, new_id
from bot.store.types import utcnow

_UNPARSED = ("unknown_tool", "invalid_json", "invalid_arguments")
"""Refusals the executor gives before it counts a call."""


@dataclass
class Progress:
    """A run's counters as its audit records and tool invocations show them."""

    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    messages_sent: int = 0
    policy_blocks: int = 0
    call_counts: dict[str, int] = field(default_factory=dict)
    inputs: list[int] = field(default_factory=list)
    """Ids of the inbound messages the run was started to answer."""


async def progress(session: AsyncSession, run_id: str) -> Progress:
    """Everything the caps count, so a resumed run starts where it stopped, not from zero."""
    found = Progress()
    query = (
        select(AuditEvent.kind, AuditEvent.payload)
        .where(AuditEvent.run_id == run_id)
        .order_by(AuditEvent.id)
    )
    for kind, payload in await session.execute(query):
        _count(found, kind, payload)
    sent = select(ToolInvocation.id).where(
        ToolInvocation.run_id == run_id, ToolInvocation.tool == "send_message"
    )
    found.messages_sent = len((await session.execute(sent)).all())
    return found


def _count(found: Progress, kind: str, payload: dict[str, Any]) -> None:
    if kind in ("run_started", "run_resumed") and not found.inputs:
        found.inputs = [int(m["id"]) for m in payload.get("input", [])]
    elif kind == "model_call":
        found.steps += 1
        usage = payload.get("usage") or {}
        found.input_tokens += int(usage.get("input") or 0)
        found.output_tokens += int(usage.get("output") or 0)
    elif kind == "tool_call":
        error = payload.get("error") or {}
        if error.get("type") == "blocked_by_policy":
            found.policy_blocks += 1
        if error.get("type") not in _UNPARSED and payload.get("arguments") is not None:
            signature = call_signature(payload["tool"], canonical_arguments(payload["arguments"]))
            found.call_counts[signature] = found.call_counts.get(signature, 0) + 1


def canonical_arguments(arguments: dict[str, Any]) -> str:
    """A tool call's arguments as one string: the same call always gives the same string."""
    return json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))


def call_signature(tool: str, canonical: str) -> str:
    """What a run counts identical calls by (see `RunState.call_counts`)."""
    return f"{tool}:{canonical}"


def new_run_id() -> str:
    """An id for a run whose row is written later, with its first state change."""
    return new_id()


async def unfinished_run(
    session: AsyncSession, conversation_id: int, *, inbound: bool, started_by: str | None = None
) -> AgentRun | None:
    """A run of this conversation that a stopped worker left running (dry runs excluded):
    an inbound one, or (`inbound=False`) a proactive one, of `started_by` when given.

    Kept apart because resuming means "this run's work is mine": an inbound run taking over a
    proactive run that had sent its message would count that message as the reply to the
    contact's new messages, and they would never be answered. Likewise a proactive run
    resumes only its own cause's run: a check-in taking over an event's run that had sent
    its message would close it, and the event's wake-up, run again, would send it twice."""
    kind = (
        AgentRun.trigger == "inbound" if inbound else AgentRun.trigger.not_in(("inbound", "test"))
    )
    query = select(AgentRun).where(
        AgentRun.conversation_id == conversation_id, AgentRun.status == "running", kind
    )
    if started_by is not None:
        query = query.where(AgentRun.started_by == started_by)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def open_run(session: AsyncSession, **fields: Any) -> AgentRun:
    """Insert a running run (the columns of `AgentRun` as keywords); its id is set on return."""
    row = AgentRun(**fields)
    session.add(row)
    await session.flush()
    return row


async def finish_run(
    session: AsyncSession,
    run_id: str,
    *,
    status: str,
    reason: str,
    steps: int,
    input_tokens: int,
    output_tokens: int,
    cost: Decimal,
) -> None:
    await session.execute(
        update(AgentRun)
        .where(AgentRun.id == run_id)
        .values(
            status=status,
            stop_reason=reason[:2000],
            steps=steps,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            finished_at=utcnow(),
        )
    )


async def cost_since(session: AsyncSession, agent_name: str, since: datetime) -> Decimal:
    """What the agent's runs started since `since` cost, in USD."""
    query = select(func.coalesce(func.sum(AgentRun.cost), 0)).where(
        AgentRun.agent_name == agent_name, AgentRun.started_at >= since
    )
    return Decimal(str((await session.execute(query)).scalar_one()))


async def invocation(session: AsyncSession, key: str) -> ToolInvocation | None:
    """The state-changing tool call done under `key` earlier in the run, if any."""
    query = select(ToolInvocation).where(ToolInvocation.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


def record_invocation(
    session: AsyncSession,
    *,
    key: str,
    run_id: str,
    tool: str,
    arguments: dict[str, Any],
    result: dict[str, Any],
) -> None:
    """Remember a state-changing call, so that a repeat in the same run is not done again."""
    session.add(
        ToolInvocation(
            idempotency_key=key, run_id=run_id, tool=tool, arguments=arguments, result=result
        )
    )
