"""The two-step turn in pydantic-ai: one lookup tool call, then a text answer.

Run by bench.frameworks with the frameworks' virtualenv (pydantic-ai-slim is not a crmbot
dependency).

--model function: `pydantic_ai.models.function.FunctionModel`, a function that answers at once,
  the same kind of fake as crmbot's.
--model test: `pydantic_ai.models.test.TestModel`, which calls the tool with arguments it makes
  from the schema and then answers with fixed text.
"""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from turn_timer import ANSWER, CARD, CONTACT, measure, parse_args, report

MODELS = ["function", "test"]
calls = 0


async def lookup_contact(name: str) -> str:
    """Look up a contact's record by name."""
    global calls
    calls += 1
    return json.dumps({**CARD, "name": name})


def _called_tool(messages: list[ModelMessage]) -> bool:
    last = messages[-1]
    return isinstance(last, ModelRequest) and any(isinstance(p, ToolReturnPart) for p in last.parts)


def answer(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
    """Calls the lookup tool on the first step and answers with text on the second."""
    if _called_tool(messages):
        return ModelResponse(parts=[TextPart(ANSWER)])
    call = ToolCallPart("lookup_contact", {"name": CONTACT}, tool_call_id="call-1")
    return ModelResponse(parts=[call])


def build_model(name: str) -> Model:
    if name == "function":
        return FunctionModel(answer)
    return TestModel(call_tools=["lookup_contact"], custom_output_text=ANSWER)


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], MODELS)
    agent = Agent(
        build_model(args.model),
        instructions="Answer the contact using only tool results.",
        tools=[lookup_contact],
    )

    async def turn() -> None:
        result = await agent.run("hi, what do you know about me?")
        assert result.output == ANSWER, result.output

    repeats = await measure(turn, args)
    turns = args.warmup + args.turns * args.repeats
    report("pydantic-ai", version("pydantic-ai-slim"), args.model, repeats, calls, turns)


if __name__ == "__main__":
    asyncio.run(main())
