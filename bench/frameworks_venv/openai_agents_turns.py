"""The two-step turn in the OpenAI Agents SDK: one lookup tool call, then a text answer.

Run by bench.frameworks with the frameworks' virtualenv and a working directory outside the
repository: the SDK's import package is `agents`, like crmbot's own top-level package. Every
`agents` import in this file is the SDK's (a rewrite of crmbot's import paths must skip it).

--model instant: a bare `Model` subclass that answers at once, the same kind of fake as
  crmbot's (a subclass of the provider interface that replaces only the network edge).
--model scripted: the SDK's own `agents.testing.ScriptedModel`, which also deep-copies every
  request it records, so it measures the test double as much as the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

from agents.testing import ScriptedModel, assistant_message, function_call
from turn_timer import ANSWER, CARD, CONTACT, measure, parse_args, report

from agents import (
    Agent,
    Model,
    ModelResponse,
    RunConfig,
    Runner,
    Usage,
    function_tool,
    set_tracing_disabled,
)

MODELS = ["instant", "scripted"]
calls = 0


@function_tool
async def lookup_contact(name: str) -> str:
    """Look up a contact's record by name."""
    global calls
    calls += 1
    return json.dumps({**CARD, "name": name})


def _called_tool(items: str | list[Any]) -> bool:
    return not isinstance(items, str) and any(
        isinstance(i, dict) and i.get("type") == "function_call_output" for i in items
    )


class InstantModel(Model):
    """Calls the lookup tool on the first step and answers with text on the second."""

    async def get_response(self, system_instructions: Any, input: Any, *_: Any, **__: Any) -> Any:
        if _called_tool(input):
            output = [assistant_message(ANSWER)]
        else:
            output = [function_call("lookup_contact", {"name": CONTACT}, call_id="call-1")]
        return ModelResponse(output=output, usage=Usage(requests=1), response_id=None)

    def stream_response(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the benchmark does not stream")


def _scripted_turn(model: ScriptedModel) -> None:
    model.extend(
        [
            [function_call("lookup_contact", {"name": CONTACT}, call_id="call-1")],
            [assistant_message(ANSWER)],
        ]
    )


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], MODELS)
    set_tracing_disabled(True)  # the default exporter would post traces to the network
    model: Model = InstantModel() if args.model == "instant" else ScriptedModel()
    agent = Agent(
        name="bench",
        instructions="Answer the contact using only tool results.",
        tools=[lookup_contact],
        model=model,
    )
    config = RunConfig(tracing_disabled=True)

    async def turn() -> None:
        if isinstance(model, ScriptedModel):
            _scripted_turn(model)
        result = await Runner.run(agent, "hi, what do you know about me?", run_config=config)
        assert result.final_output == ANSWER, result.final_output

    repeats = await measure(turn, args)
    turns = args.warmup + args.turns * args.repeats
    report("openai-agents", version("openai-agents"), args.model, repeats, calls, turns)


if __name__ == "__main__":
    asyncio.run(main())
