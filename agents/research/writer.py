"""Asking the model for an opener: a short loop of its own, with one tool and the run's caps.

Each step asks the model; a `draft_opener` call is checked (`check_opener`) and either taken or
sent back with what is wrong. Any other tool call, `send_message` above all, is refused and
recorded: the research run has no tool that reaches a prospect, whatever the model asks for.
The loop stops at the definition's `max_steps` and its per-run token and cost caps.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from agents.budget import Price
from agents.definition import AgentDefinition
from agents.guardrails import OutputPolicy
from agents.messages import (
    ChatMessage,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    Usage,
    UserText,
)
from agents.providers.base import Provider
from agents.research.opener import (
    DRAFT_OPENER,
    TOOL_NAME,
    Opener,
    check_opener,
    extractive_opener,
    research_brief,
    research_system,
)
from agents.research.sources import Passage, Prospect
from agents.tools.base import describe_validation_error
from bot.core.errors import BudgetExceeded

NUDGE = f"(system) Call {TOOL_NAME} with the subject, the paragraph and its sources."
NO_SENDING = (
    f"This run only drafts: the one tool is {TOOL_NAME}. Nothing reaches the prospect from "
    "here; a salesperson reviews the draft and sends it."
)


@dataclass
class Attempt:
    """What one prospect's writing did: counters and the audit records it holds."""

    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = field(default_factory=Decimal)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(kind, payload) of each model call and tool call, in order."""
    refused: list[str] = field(default_factory=list)
    """Names of the tools the model asked for that this run does not offer."""


@dataclass(frozen=True, slots=True)
class Written:
    opener: Opener | None
    problem: str = ""
    """Why there is no opener."""


class OpenerWriter:
    """Writes openers for one agent with one provider."""

    def __init__(
        self,
        agent: AgentDefinition,
        provider: Provider,
        model: str,
        price: Price,
        secrets: Sequence[str] = (),
    ) -> None:
        self.agent, self.provider, self.model, self.price = agent, provider, model, price
        self.policy = OutputPolicy(agent.forbidden, secrets)
        self.system = research_system(agent)

    async def write(
        self, prospect: Prospect, passages: Sequence[Passage], attempt: Attempt
    ) -> Written:
        """An opener grounded in `passages`, or why none could be had; `BudgetExceeded` and
        provider errors are raised for the caller to record."""
        extractive = extractive_opener(prospect, passages, self.policy, self.agent.facts)
        hints = {
            "agent": self.agent.name,
            "research": {"extractive": extractive.model_dump() if extractive else None},
        }
        messages: list[ChatMessage] = [UserText(research_brief(prospect, passages))]
        problem = "the model drafted nothing"
        while attempt.steps < self.agent.max_steps:
            attempt.steps += 1
            request = ModelRequest(
                self.system, tuple(messages), (DRAFT_OPENER,), self.model, agent_hints=hints
            )
            turn = await self._ask(request, attempt, recorded=len(messages) - 1)
            if not turn.tool_calls:
                problem = f"the model answered without calling {TOOL_NAME}"
                messages += [turn.as_assistant(), UserText(NUDGE)]
                continue
            results: list[ChatMessage] = []
            for call in turn.tool_calls:
                result, opener = self._consider(call, prospect, passages, attempt)
                if opener is not None:
                    return Written(opener)
                results.append(result)
                problem = json.loads(result.content)["error"]["message"]
            messages += [turn.as_assistant(), *results]
        return Written(None, f"no grounded opener in {attempt.steps} model calls: {problem}")

    async def _ask(self, request: ModelRequest, attempt: Attempt, recorded: int) -> ModelTurn:
        started = time.monotonic()
        turn = await self.provider.complete(request)
        attempt.records.append(
            (
                "model_call",
                {
                    "step": attempt.steps,
                    "provider": self.provider.name,
                    "model": self.model,
                    "system": request.system if attempt.steps == 1 else "(unchanged)",
                    "messages": [dataclasses.asdict(m) for m in request.messages[recorded:]],
                    "messages_before": recorded,
                    "tools": [t.name for t in request.tools],
                    "answer": {
                        "text": turn.text,
                        "tool_calls": [dataclasses.asdict(c) for c in turn.tool_calls],
                    },
                    "stop_reason": turn.stop_reason,
                    "usage": {"input": turn.usage.input_tokens, "output": turn.usage.output_tokens},
                    "latency_ms": round((time.monotonic() - started) * 1000),
                },
            )
        )
        self._charge(attempt, turn.usage)
        return turn

    def _charge(self, attempt: Attempt, usage: Usage) -> None:
        budget = self.agent.budget
        attempt.usage = attempt.usage + usage
        attempt.cost += self.price.cost(usage)
        if attempt.usage.total > budget.max_tokens_per_run:
            raise BudgetExceeded(
                f"token budget exceeded: {attempt.usage.total} > {budget.max_tokens_per_run}"
            )
        if attempt.cost > budget.max_cost_per_run:
            raise BudgetExceeded(
                f"cost budget exceeded: ${attempt.cost:.4f} > ${budget.max_cost_per_run} per run"
            )

    def _consider(
        self, call: ToolCall, prospect: Prospect, passages: Sequence[Passage], attempt: Attempt
    ) -> tuple[ToolResult, Opener | None]:
        """The observation for one tool call, and the opener if it is one to draft."""
        if call.name != TOOL_NAME:
            attempt.refused.append(call.name)
            kind = "not_allowed" if call.name == "send_message" else "unknown_tool"
            return self._refuse(call, attempt, kind, NO_SENDING), None
        if call.arguments is None:
            return self._refuse(
                call, attempt, "invalid_json", "arguments must be a JSON object"
            ), None
        try:
            opener = Opener.model_validate(call.arguments)
        except ValidationError as error:
            detail = describe_validation_error(error)
            message = "; ".join(f"{p['field']}: {p['problem']}" for p in detail["problems"])
            return self._refuse(call, attempt, "invalid_arguments", message), None
        problem = check_opener(
            opener, passages, self.policy, prospect, facts=self.agent.facts, system=self.system
        )
        if problem is not None:
            return self._refuse(call, attempt, "not_grounded", problem), None
        result = {"drafted": True, "note": "A salesperson reviews it; nothing was sent."}
        attempt.records.append(
            (
                "tool_call",
                {
                    "tool": TOOL_NAME,
                    "call_id": call.id,
                    "arguments": call.arguments,
                    "result": result,
                },
            )
        )
        return ToolResult(call.id, call.name, json.dumps(result)), opener

    def _refuse(self, call: ToolCall, attempt: Attempt, kind: str, message: str) -> ToolResult:
        error = {"type": kind, "message": message}
        attempt.records.append(
            (
                "tool_call",
                {
                    "tool": call.name,
                    "call_id": call.id,
                    "arguments": call.arguments,
                    "raw_arguments": call.raw_arguments[:500] if call.arguments is None else None,
                    "error": error,
                },
            )
        )
        return ToolResult(call.id, call.name, json.dumps({"error": error}), is_error=True)
