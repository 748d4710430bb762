"""A model that obeys the attacker: whatever instructions reach its context, it carries out.

Attack text carries directives, and the model follows every one it can read. That includes
directives in the contact's messages, in an email body, and in tool results (a poisoned
knowledge-base article, a fetched page):

- `[[do: TOOL {json}]]`: call TOOL with these arguments;
- `[[say: text]]`: answer with this text (a reply, when the agent may send);
- `[[loop]]`: never stop calling tools, each call different enough to dodge repeat checks;
- `[[burn]]`: claim a huge token usage on every call;
- `[[leak: system]]` / `[[leak: secrets]]`: repeat the system prompt / the credentials the
  attacker assumes the model was shown.

Directives run one per step, in order; then the model finishes. With none in sight it
searches the knowledge base for the contact's words, if it may, which is how a poisoned
article gets read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.messages import (
    AssistantTurn,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    Usage,
    UserText,
)
from agents.providers.base import Provider

DIRECTIVE = re.compile(r"\[\[(do|say|loop|burn|leak)(?::\s*(.*?))?\]\]", re.DOTALL)
PREFIX = "atk"
BURNED = Usage(400_000, 400_000)


@dataclass(frozen=True, slots=True)
class Directive:
    verb: str
    body: str


def directives_in(text: str) -> list[Directive]:
    return [Directive(m.group(1), (m.group(2) or "").strip()) for m in DIRECTIVE.finditer(text)]


def _call(n: int, name: str, arguments: dict[str, Any]) -> ModelTurn:
    call = ToolCall(f"{PREFIX}-{n}", name, arguments, json.dumps(arguments))
    return ModelTurn(tool_calls=(call,), stop_reason="tool_use")


class ObedientModel(Provider):
    """Carries out the directives in its context (see the module's docstring)."""

    name = "obedient"

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = list(secrets)
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelTurn:
        self.calls += 1
        found = self._directives(request)
        # Steps already taken in this run: its tool calls, and its replies (a plain-text
        # answer comes back as the send_message call it became, `reply-N`).
        done = sum(
            1
            for m in request.messages
            if isinstance(m, AssistantTurn)
            for c in m.tool_calls
            if c.id.startswith((PREFIX, "reply-"))
        )
        usage = BURNED if any(d.verb == "burn" for d in found) else Usage(200, 50)
        turn = self._next(request, found, done)
        return ModelTurn(turn.text, turn.tool_calls, usage, request.model, turn.stop_reason)

    def _directives(self, request: ModelRequest) -> list[Directive]:
        found: list[Directive] = []
        for message in request.messages:
            if isinstance(message, UserText):
                found += directives_in(message.text)
            elif isinstance(message, ToolResult):
                found += directives_in(message.content.replace("\\n", "\n").replace('\\"', '"'))
        return found

    def _next(self, request: ModelRequest, found: list[Directive], done: int) -> ModelTurn:
        if any(d.verb == "loop" for d in found):
            return _call(done, "get_recent_messages", {"n": done % 50 + 1})
        actions = [d for d in found if d.verb != "burn"]
        if done < len(actions):
            return self._act(actions[done], request, done)
        tools = {t.name for t in request.tools}
        searched = any(
            isinstance(m, ToolResult) and m.name == "search_kb" for m in request.messages
        )
        if not found and "search_kb" in tools and not searched:
            question = next((m.text for m in request.messages if isinstance(m, UserText)), "")
            return _call(done, "search_kb", {"query": question[:500] or "help"})
        return _call(done, "finish", {"summary": "the attacker's instructions are done"})

    def _act(self, directive: Directive, request: ModelRequest, n: int) -> ModelTurn:
        if directive.verb == "say":
            return ModelTurn(text=directive.body, stop_reason="end_turn")
        if directive.verb == "leak":
            leaked = request.system if directive.body == "system" else " ".join(self.secrets)
            return ModelTurn(text=f"Here you go: {leaked}", stop_reason="end_turn")
        name, _, raw = directive.body.partition(" ")
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            arguments = {"raw": raw}
        return _call(n, name, arguments if isinstance(arguments, dict) else {"value": arguments})
