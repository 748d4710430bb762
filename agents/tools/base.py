"""Tools as plain async functions with a typed argument model, declared by one decorator.

The argument model gives the strict JSON schema the model sees and the validation its
arguments must pass; a validation failure becomes a structured error for the model, never an
exception. A tool signals an outcome it cannot express as data (hand off, finish) with a
`Control` value, and refuses a call with `ToolRefused`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from agents.messages import ToolSpec

if TYPE_CHECKING:
    from agents.tools.context import ToolContext


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolRefused(Exception):
    """Raised inside a tool to refuse the call; the message goes back to the model."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """End the run by passing the conversation to people."""

    reason: str
    summary: str = ""


@dataclass(frozen=True, slots=True)
class FinishRequest:
    """End the run: the goal for this turn is met."""

    summary: str = ""


Control = HandoffRequest | FinishRequest


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool returns: data for the model, and optionally a control signal."""

    result: dict[str, Any]
    control: Control | None = None


A = TypeVar("A", bound=ToolArgs)
ToolFn = Callable[["ToolContext", A], Awaitable[ToolOutcome]]


@dataclass(frozen=True)
class Tool:
    """A registered tool."""

    name: str
    description: str
    args_model: type[ToolArgs]
    fn: ToolFn[Any]
    mutates: bool = False
    """Changes state: its calls are recorded and a replay with the same arguments is a no-op."""
    spec: ToolSpec = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "spec", ToolSpec(self.name, self.description, strict_schema(self.args_model))
        )

    def parse(self, arguments: dict[str, Any]) -> ToolArgs:
        return self.args_model.model_validate(arguments)


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without titles; every object closed to extra properties."""
    schema = model.model_json_schema()

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: clean(v) for k, v in node.items() if k != "title"}
            if node.get("type") == "object":
                node.setdefault("additionalProperties", False)
                node.setdefault("properties", {})
            return node
        if isinstance(node, list):
            return [clean(item) for item in node]
        return node

    cleaned: dict[str, Any] = clean(schema)
    return cleaned


REGISTRY: dict[str, Tool] = {}


def tool(*, mutates: bool = False) -> Callable[[ToolFn[A]], ToolFn[A]]:
    """Register an async `fn(ctx, args)`; its docstring is the description the model reads."""

    def register(fn: ToolFn[A]) -> ToolFn[A]:
        args_model = fn.__annotations__["args"]
        if isinstance(args_model, str):
            args_model = fn.__globals__[args_model]
        description = " ".join((fn.__doc__ or "").split())
        REGISTRY[fn.__name__] = Tool(fn.__name__, description, args_model, fn, mutates)
        return fn

    return register


def describe_validation_error(error: ValidationError) -> dict[str, Any]:
    """A compact, model-readable account of what was wrong with the arguments."""
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(arguments)", "problem": e["msg"]}
        for e in error.errors()
    ]
    return {
        "type": "invalid_arguments",
        "message": "Fix the arguments and call again.",
        "problems": problems,
    }
