"""Fake models that subclass the real Provider interface and replace only the network edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from agents.messages import ModelRequest, ModelTurn, ToolCall, Usage
from agents.providers.base import Provider


def call(
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    id: str | None = None,
    raw: str | None = None,
) -> ToolCall:
    """A tool call as a model would send it; `raw` for arguments that are not a JSON object."""
    if raw is not None:
        return ToolCall(id or f"call-{name}", name, None, raw)
    arguments = arguments or {}
    return ToolCall(id or f"call-{name}", name, arguments, json.dumps(arguments))


def turn(text: str = "", *calls: ToolCall, tokens: tuple[int, int] = (10, 5)) -> ModelTurn:
    return ModelTurn(text=text, tool_calls=calls, usage=Usage(*tokens), model="scripted")


class ScriptedModel(Provider):
    """Answers each request with the next scripted turn and remembers every request."""

    name = "scripted"

    def __init__(self, *turns: ModelTurn) -> None:
        self.turns = list(turns)
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelTurn:
        self.requests.append(request)
        if not self.turns:
            raise AssertionError("ScriptedModel ran out of turns")
        return self.turns.pop(0)

    def assert_complete(self) -> None:
        assert not self.turns, f"{len(self.turns)} scripted turns were never requested"


class FunctionModel(Provider):
    """Answers with whatever `fn(request)` returns: for branching or adversarial behaviour."""

    name = "function"

    def __init__(self, fn: Callable[[ModelRequest], Awaitable[ModelTurn] | ModelTurn]) -> None:
        self.fn = fn
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelTurn:
        self.requests.append(request)
        result = self.fn(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, ModelTurn)
        return result
