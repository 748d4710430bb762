"""The agent loop: plan (ask the model), act (run its tool calls), observe, repeat.

One turn yields a typed next step, `Finish | RunAgain | Handoff`; the outer loop counts steps
and enforces the caps. Stop conditions are raised as `RunError`s for the engine to turn into a
handoff. The loop trusts nothing the model says: plain text is sent through the same
`send_message` path (policy, scope, idempotency) as a tool call, and text that promises a
person hands off even if the model never calls the tool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, assert_never

from agents.budget import Price, charge
from agents.guardrails import promises_handoff
from agents.messages import AssistantTurn, ChatMessage, ModelRequest, ModelTurn, ToolCall, UserText
from agents.providers.base import Provider
from agents.run_state import RunState
from agents.tools.base import FinishRequest, HandoffRequest
from agents.tools.executor import AfterCall, Execution, ToolExecutor
from bot.core.errors import ModelBehaviorError, StepLimitExceeded
from bot.store.db import Tx

log = logging.getLogger("agents.loop")
EMPTY_ANSWER_NUDGE = (
    "(system) Your last answer was empty. Reply to the contact, or call handoff_to_human."
)


@dataclass(frozen=True, slots=True)
class Finish:
    summary: str = ""


@dataclass(frozen=True, slots=True)
class RunAgain:
    new_messages: tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class Handoff:
    reason: str
    summary: str = ""


NextStep = Finish | RunAgain | Handoff
StepRecorder = Callable[[RunState, dict[str, Any]], Awaitable[None]]
Closer = Callable[[Tx, Finish | Handoff], Awaitable[None]]
"""Ends the run in a transaction that is already open."""


@dataclass
class LoopInput:
    """What the engine prepared for the loop."""

    provider: Provider
    model: str
    system: str
    messages: list[ChatMessage]
    price: Price
    hints: dict[str, Any]
    can_reply: bool
    """Plain text from the model is a reply to the contact (inbound runs of agents that may
    send); otherwise it is the run's summary."""
    price_of: Callable[[str], Price] | None = None
    """The price of the model that actually answered (a fallback provider's may differ)."""


def _dump(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(m) for m in messages]


class AgentLoop:
    """Runs the step-limited loop for one `RunState`."""

    def __init__(self, executor: ToolExecutor, record: StepRecorder) -> None:
        self.executor = executor
        self.record = record

    async def run(
        self, run: RunState, given: LoopInput, *, close: Closer | None = None
    ) -> Finish | Handoff:
        """Loop until the run finishes or hands off. With `close`, a reply that ends the run
        ends it in the reply's own transaction: nothing comes between them (no model call),
        so one commit does for both, and `close` is not called again for it."""
        tools = tuple(t.spec for t in self.executor.allowed(run))
        messages, empty_answers = list(given.messages), 0
        recorded = 0  # messages already in an earlier step's audit record
        while True:
            if run.steps >= run.agent.max_steps:
                raise StepLimitExceeded(f"{run.steps} model calls without finishing")
            run.steps += 1
            request = ModelRequest(
                given.system, tuple(messages), tools, given.model, agent_hints=given.hints
            )
            turn = await self._plan(run, given, request, recorded)
            recorded = len(request.messages)
            if not turn.text.strip() and not turn.tool_calls:
                empty_answers += 1
                if empty_answers >= 2:
                    raise ModelBehaviorError("the model returned empty answers twice")
            step = await self._act(run, turn, given.can_reply, close)
            match step:
                case Finish() | Handoff():
                    return step
                case RunAgain(new_messages):
                    messages.extend(new_messages)
                case _:
                    assert_never(step)

    async def _plan(
        self, run: RunState, given: LoopInput, request: ModelRequest, recorded: int
    ) -> ModelTurn:
        """Ask the model; its audit record holds what is new since the last step (the rest is
        in the earlier records), so a step's record does not grow with the conversation."""
        started = time.monotonic()
        turn = await given.provider.complete(request)
        latency_ms = round((time.monotonic() - started) * 1000)
        system_digest = hashlib.sha256(request.system.encode()).hexdigest()[:16]
        await self.record(
            run,
            {
                "step": run.steps,
                "provider": given.provider.name,
                "model": given.model,
                "system": request.system
                if run.steps == 1
                else f"(unchanged, sha256 {system_digest})",
                "messages": _dump(list(request.messages[recorded:])),
                "messages_before": recorded,
                "tools": [t.name for t in request.tools],
                "answer": {
                    "text": turn.text,
                    "tool_calls": [dataclasses.asdict(c) for c in turn.tool_calls],
                },
                "stop_reason": turn.stop_reason,
                "usage": {"input": turn.usage.input_tokens, "output": turn.usage.output_tokens},
                "latency_ms": latency_ms,
            },
        )
        price = given.price
        if given.price_of is not None and turn.model and turn.model != given.model:
            price = given.price_of(turn.model)  # answered by another model: its own price
        charge(run, turn.usage, price, run.agent.budget)
        return turn

    async def _act(
        self, run: RunState, turn: ModelTurn, can_reply: bool, close: Closer | None
    ) -> NextStep:
        calls, reply = turn.tool_calls, None
        if not calls:
            if not turn.text.strip():
                return RunAgain((turn.as_assistant(), UserText(EMPTY_ANSWER_NUDGE)))
            if not can_reply:
                if promises_handoff(turn.text):
                    return Handoff("the agent said a person should take over", turn.text)
                return Finish(turn.text)
            # Plain text is a reply: send it through send_message like any other.
            reply = ToolCall(f"reply-{run.steps}", "send_message", {"text": turn.text})
            calls = (reply,)
        # A plain-text answer is replayed to the model as the send_message call it became.
        assistant = AssistantTurn(tool_calls=calls) if reply else turn.as_assistant()
        if reply is not None and close is not None:
            executions = [await self.executor.execute(run, reply, then=self._closing(turn, close))]
        else:
            executions = [await self.executor.execute(run, call) for call in calls]
        observed: tuple[ChatMessage, ...] = (assistant, *(e.result for e in executions))
        return self._next(turn, executions, observed, reply is not None)

    def _closing(self, turn: ModelTurn, close: Closer) -> AfterCall:
        """What a plain-text reply does in its transaction: ends the run if it is the end."""

        async def then(session: Tx, execution: Execution) -> None:
            step = self._next(turn, [execution], (), True)
            if isinstance(step, Finish | Handoff):
                await close(session, step)

        return then

    def _next(
        self,
        turn: ModelTurn,
        executions: list[Execution],
        observed: tuple[ChatMessage, ...],
        was_reply: bool,
    ) -> NextStep:
        controls = [e.control for e in executions if e.control is not None]
        handoff = next((c for c in controls if isinstance(c, HandoffRequest)), None)
        if handoff is not None:
            return Handoff(handoff.reason, handoff.summary)
        if not was_reply and turn.text and promises_handoff(turn.text):
            return Handoff("the agent said a person would take over", turn.text)
        finish = next((c for c in controls if isinstance(c, FinishRequest)), None)
        if finish is not None:
            return Finish(finish.summary)
        if was_reply and not executions[0].result.is_error:
            return Finish(turn.text)
        return RunAgain(observed)
