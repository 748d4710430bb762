"""Rendering the audit trail for people: `crmbot audit show RUN_ID`."""

from __future__ import annotations

import json
from typing import Any

from bot.core.errors import NotFoundError
from bot.store.agent_runs import find_run
from bot.store.audit import run_events
from bot.store.db import Tx
from bot.store.models import AuditEvent

_WIDTH = 400


def _short(value: Any, width: int = _WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _model_call(p: dict[str, Any]) -> list[str]:
    usage = p.get("usage", {})
    lines = [
        f"model call, step {p.get('step')}: {p.get('provider')}/{p.get('model')}, "
        f"{usage.get('input', 0)} in + {usage.get('output', 0)} out tokens, "
        f"{p.get('latency_ms')} ms",
        f"    saw: {p.get('messages_before', 0) + len(p.get('messages', []))} messages; last: "
        + _short(p["messages"][-1] if p.get("messages") else "-", 200),
    ]
    answer = p.get("answer", {})
    if answer.get("text"):
        lines.append(f"    said: {_short(answer['text'])}")
    for call in answer.get("tool_calls", []):
        args = (
            call.get("arguments")
            if call.get("arguments") is not None
            else call.get("raw_arguments")
        )
        lines.append(f"    asked for: {call.get('name')}({_short(args, 200)})")
    return lines


def _tool_call(p: dict[str, Any]) -> list[str]:
    head = f"tool {p.get('tool')}({_short(p.get('arguments') or p.get('raw_arguments'), 200)})"
    if p.get("error"):
        return [f"{head} -> REFUSED {p['error'].get('type')}: {_short(p['error'].get('message'))}"]
    replay = " (replayed, not repeated)" if p.get("replayed") else ""
    return [f"{head} -> {_short(p.get('result'))}{replay}"]


def render_event(event: AuditEvent) -> list[str]:
    p = event.payload
    stamp = f"#{event.id} {event.created_at:%Y-%m-%d %H:%M:%S} "
    match event.kind:
        case "model_call":
            body = _model_call(p)
        case "tool_call":
            body = _tool_call(p)
        case "run_started" | "run_resumed":
            body = [
                f"{event.kind.replace('_', ' ')} by {p.get('started_by')} ({p.get('trigger')}) "
                f"with {p.get('agent')} on {p.get('provider')}/{p.get('model')}",
                *(f"    input: {_short(m.get('text'))}" for m in p.get("input", [])),
            ]
        case "run_finished":
            body = [
                f"run {p.get('status')}: {_short(p.get('reason'))} "
                f"({p.get('steps')} steps, {p.get('tokens')}, ${p.get('cost_usd')})"
            ]
        case _:
            body = [f"{event.kind}: {_short(p)}"]
    return [stamp + body[0], *body[1:]]


async def render_run(session: Tx, run_id: str) -> str:
    run = await find_run(session, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}")
    events = await run_events(session, run_id)
    lines = [
        f"run {run.id}  agent {run.agent_name}  conversation {run.conversation_id}  "
        f"contact {run.contact_id}",
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} by {run.started_by} ({run.trigger}); "
        f"status {run.status}; {run.steps} steps; {run.input_tokens}+{run.output_tokens} tokens; "
        f"${run.cost:.6f}",
        "",
    ]
    for event in events:
        lines += render_event(event)
    return "\n".join(lines)
