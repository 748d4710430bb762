"""Running one tool call safely: lookup, validation, scope, idempotency, audit.

Nothing the model sends can crash the run: an unknown tool, arguments that are not JSON, a
schema violation or a refused call all come back to the model as a structured error. A state-
changing call is recorded under a key derived from the run and its arguments, so the same call
replayed in the same run (a retry, a resumed run) returns the recorded result and does nothing
twice. The third identical call in a run stops it: the model is going round in circles.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.messages import ToolCall, ToolResult
from agents.run_state import RunState
from agents.tools.base import REGISTRY, Control, Tool, ToolOutcome, ToolRefused
from agents.tools.base import describe_validation_error as describe
from agents.tools.context import ToolContext
from bot.core.errors import RepeatedToolCall
from bot.store import runs
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx
from bot.store.runs import call_signature, canonical_arguments

log = logging.getLogger("agents.tools")
ALWAYS_ALLOWED = ("finish",)
MAX_IDENTICAL_CALLS = 2


@dataclass(frozen=True, slots=True)
class Execution:
    """The observation for the model and, if the tool asked for one, a control signal."""

    result: ToolResult
    control: Control | None = None


def _error(call: ToolCall, kind: str, message: str, **extra: Any) -> ToolResult:
    content = json.dumps({"error": {"type": kind, "message": message, **extra}})
    return ToolResult(call.id, call.name, content, is_error=True)


AfterCall = Callable[[Tx, Execution], Awaitable[None]]
"""Work to do in the transaction of a state-changing call, once its outcome is known."""


class ToolExecutor:
    """Executes the model's tool calls for runs, each in its own transaction."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def allowed(self, run: RunState) -> list[Tool]:
        names = [*run.agent.tools, *ALWAYS_ALLOWED]
        return [REGISTRY[name] for name in names if name in REGISTRY]

    async def execute(
        self, run: RunState, call: ToolCall, *, then: AfterCall | None = None
    ) -> Execution:
        """Run `call`. `then` runs in the call's transaction if it commits one (a refused or
        read-only call commits nothing, and `then` does not run)."""
        tool = next((t for t in self.allowed(run) if t.name == call.name), None)
        if tool is None:
            names = [t.name for t in self.allowed(run)]
            return await self._refuse(run, call, "unknown_tool", f"use one of {names}")
        if call.arguments is None:
            return await self._refuse(
                run,
                call,
                "invalid_json",
                "arguments must be a JSON object",
                received=call.raw_arguments[:500],
            )
        try:
            args = tool.parse(call.arguments)
        except ValidationError as exc:
            detail = describe(exc)
            return await self._refuse(
                run, call, "invalid_arguments", detail["message"], problems=detail["problems"]
            )
        canonical = canonical_arguments(args.model_dump(mode="json"))
        self._count(run, call.name, canonical)
        try:
            return await self._run(run, tool, call, args, canonical, then)
        except ToolRefused as refused:
            return await self._refuse(run, call, refused.kind, refused.message)

    def _count(self, run: RunState, name: str, canonical: str) -> None:
        signature = call_signature(name, canonical)
        run.call_counts[signature] = run.call_counts.get(signature, 0) + 1
        if run.call_counts[signature] > MAX_IDENTICAL_CALLS:
            raise RepeatedToolCall(
                f"{name} called {run.call_counts[signature]} times with {canonical}"
            )

    async def _run(
        self,
        run: RunState,
        tool: Tool,
        call: ToolCall,
        args: Any,
        canonical: str,
        then: AfterCall | None,
    ) -> Execution:
        key = f"{run.run_id}:{tool.name}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"
        # A call that changes nothing needs no commit: its record waits in the run's buffer
        # for the next state change, like a model call's.
        writes = tool.mutates and not run.dry_run
        commits = writes or run.holds_a_step
        async with self.db.transaction() if commits else self.db.reading() as session:
            replay = None
            if writes:
                replay = await runs.invocation(session, key)
            if replay is not None:
                outcome = ToolOutcome(
                    {
                        **replay.result,
                        "replayed": True,
                        "note": "Already done earlier in this run; not repeated.",
                    }
                )
            else:
                outcome = await tool.fn(ToolContext(session, run, self.audit), args)
                if writes:
                    runs.record_invocation(
                        session,
                        key=key,
                        run_id=run.run_id,
                        tool=tool.name,
                        arguments=json.loads(canonical),
                        result=outcome.result,
                    )
            record = run.entry(
                "tool_call",
                {
                    "tool": tool.name,
                    "call_id": call.id,
                    "arguments": json.loads(canonical),
                    "result": outcome.result,
                    "replayed": replay is not None,
                    "control": type(outcome.control).__name__ if outcome.control else None,
                },
            )
            content = json.dumps(outcome.result, default=str)
            execution = Execution(ToolResult(call.id, call.name, content), outcome.control)
            if commits:
                await run.write_held(session, self.audit, record)
                if then is not None:
                    await then(session, execution)
            else:
                run.unwritten.append(record)
        return execution

    async def _refuse(
        self, run: RunState, call: ToolCall, kind: str, message: str, **extra: Any
    ) -> Execution:
        log.info("run %s: tool %s refused (%s): %s", run.run_id, call.name, kind, message)
        # A refused call changed nothing: its record is written with the next state change.
        record = run.entry(
            "tool_call",
            {
                "tool": call.name,
                "call_id": call.id,
                "arguments": call.arguments,
                "raw_arguments": call.raw_arguments[:500] if call.arguments is None else None,
                "error": {"type": kind, "message": message, **extra},
            },
        )
        if run.holds_a_step:
            async with self.db.transaction() as session:
                await run.write_held(session, self.audit, record)
        else:
            run.unwritten.append(record)
        return Execution(_error(call, kind, message, **extra))
