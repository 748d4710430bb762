"""The offline provider: a deterministic policy read from the agent definition.

It needs no key and no network, so crmbot is usable and demonstrable out of the box. It asks
the agent's qualifying questions in turn, records each answer with `record_answer`, and when
the questions are done follows the rubric's decision that the tool reports: a qualified lead is
offered the free meeting times and booked at the one they name as written; a lead for nurture
is thanked; otherwise (or when it has nothing scripted to say) it hands off. It says plainly
that it is offline when asked what it is. An agent grounded in the knowledge base answers
extractively: it searches, and sends the best passage as written, citing its article. A
proactive run sends the trigger's written `message` (names filled in) and nothing else. It
speaks through the same tool calls and loop as a real model, so everything around it (policy,
audit, outbox) is exercised for real.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agents.messages import (
    AssistantTurn,
    ChatMessage,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolResult,
    Usage,
    UserText,
)
from agents.providers.base import Provider

IDENTITY_QUESTION = re.compile(
    r"(?i)\b(?:who|what)\s+are\s+you\b|\bare\s+you\s+(?:a\s+)?(?:bot|robot|ai|human|real|person)"
    r"|\bwhich\s+(?:model|ai)\b"
)
IDENTITY_ANSWER = (
    "I'm crmbot's assistant running in offline mode: no AI model is connected, so I follow a "
    "fixed script of questions. A person on the team will read everything you write here."
)
GREETING = "Hi, thanks for getting in touch!"
OFFER = "Free times for a call:"
OFFER_TEXT = (
    "Thanks! I'd love to set up a 30-minute call with our team. "
    + OFFER
    + " {times}. Which one suits you? Reply with the time as written."
)
BOOKED_TEXT = "You're booked for {time}. Thanks, talk to you then!"
NURTURE_TEXT = "Thanks, that's all my questions for now. We'll stay in touch."


def _estimate_tokens(characters: int) -> int:
    """About four characters a token: enough for the audit trail and budgets to mean something."""
    return max(1, characters // 4)


class OfflineProvider(Provider):
    """Scripted qualifying conversation driven by `ModelRequest.agent_hints`."""

    name = "offline"

    async def complete(self, request: ModelRequest) -> ModelTurn:
        turn = self._decide(request)
        prompt_size = len(request.system) + sum(len(str(m)) for m in request.messages)
        answer_size = len(turn.text) + sum(len(json.dumps(c.arguments)) for c in turn.tool_calls)
        usage = Usage(_estimate_tokens(prompt_size), _estimate_tokens(answer_size))
        return ModelTurn(turn.text, turn.tool_calls, usage, request.model, turn.stop_reason)

    def _decide(self, request: ModelRequest) -> ModelTurn:
        tools = {t.name for t in request.tools}
        last = request.messages[-1] if request.messages else UserText("")
        if isinstance(last, ToolResult):
            return self._after_tool(request, last, tools)
        text = last.text if isinstance(last, UserText) else ""
        task = request.agent_hints.get("task")
        if task is not None:
            return _proactive(task, tools)
        if IDENTITY_QUESTION.search(text):
            return ModelTurn(text=IDENTITY_ANSWER, stop_reason="end_turn")
        if "grounded" in request.agent_hints and "search_kb" in tools and len(text.strip()) > 1:
            return _call("search_kb", {"query": text.strip()[:500]})
        return self._qualify(request, text, tools)

    def _qualify(self, request: ModelRequest, text: str, tools: set[str]) -> ModelTurn:
        questions: list[dict[str, str]] = request.agent_hints.get("questions", [])
        answers: dict[str, Any] = request.agent_hints.get("answers", {})
        pending = _last_asked(request.messages, questions)
        if pending and pending["key"] not in answers and "record_answer" in tools:
            arguments = {"key": pending["key"], "answer": text.strip()[:1000] or "(no answer)"}
            return _call("record_answer", arguments)
        remaining = [q for q in questions if q["key"] not in answers]
        if remaining and "send_message" in tools:
            opener = f"{GREETING} " if not _asked_anything(request.messages) else ""
            return ModelTurn(text=opener + remaining[0]["ask"], stop_reason="end_turn")
        if _offered_times(request.messages) and {"find_meeting_times", "schedule_meeting"} <= tools:
            return _call("find_meeting_times", {})  # the times are read afresh, then matched
        return self._hand_over(answers, text)

    def _after_tool(self, request: ModelRequest, result: ToolResult, tools: set[str]) -> ModelTurn:
        if result.is_error:
            return self._hand_over({}, f"tool {result.name} failed: {result.content}")
        if result.name in ("handoff_to_human", "send_message"):
            return _call("finish", {"summary": f"{result.name} done"})
        data: dict[str, Any] = json.loads(result.content)
        if result.name == "record_answer":
            return self._after_answer(request, data, tools)
        if result.name == "find_meeting_times":
            return self._pick_time(request, data)
        if result.name == "search_kb":
            return _extract(data, tools)
        if result.name == "schedule_meeting" and "send_message" in tools:
            when = _label_of(request.messages, str(data.get("starts_at")))
            return _say(BOOKED_TEXT.format(time=when))
        return _call("finish", {"summary": f"looked at {result.name}"})

    def _after_answer(
        self, request: ModelRequest, data: dict[str, Any], tools: set[str]
    ) -> ModelTurn:
        remaining = data.get("remaining_questions", [])
        questions = {q["key"]: q["ask"] for q in request.agent_hints.get("questions", [])}
        if remaining and "send_message" in tools:
            return _say(f"Thanks! {questions[remaining[0]]}")
        times = [str(t["label"]) for t in data.get("free_times", [])]
        if data.get("decision") == "qualified" and times and "send_message" in tools:
            return _say(OFFER_TEXT.format(times="; ".join(times)))
        if data.get("decision") == "nurture":
            if "send_message" in tools:
                return _say(NURTURE_TEXT)
            return _call("finish", {"summary": "lead tagged for nurture"})
        answers = {**request.agent_hints.get("answers", {}), **_just_recorded(request)}
        return self._hand_over(answers, "all qualifying questions answered")

    def _pick_time(self, request: ModelRequest, data: dict[str, Any]) -> ModelTurn:
        """Book the offered time the contact named, as written; anything else goes to a person."""
        said = _last_user_text(request.messages)
        wanted = _squash(said)
        for slot in data.get("times", []):
            if any(form in wanted for form in _label_forms(str(slot["label"]))):
                arguments = {"starts_at": slot["starts_at"], "contact_quote": said.strip()[:300]}
                return _call("schedule_meeting", arguments)
        return self._hand_over({}, f"the contact answered the offered meeting times: {said}")

    def _hand_over(self, answers: dict[str, Any], context: str) -> ModelTurn:
        summary = "; ".join(f"{k}: {v}" for k, v in answers.items()) or context
        reason = (
            "lead qualified: every question answered"
            if context == "all qualifying questions answered"
            else "the offline assistant has no scripted answer for this"
        )
        return _call("handoff_to_human", {"reason": reason, "summary": summary[:2000]})


def _extract(found: dict[str, Any], tools: set[str]) -> ModelTurn:
    """An extractive answer: the best passage as written, citing its article. Whether it is
    grounded enough to send is decided by the code around send_message, not here."""
    hits = found.get("hits") or []
    if not hits or "send_message" not in tools:
        reason = "nothing in the knowledge base answers this"
        return _call("handoff_to_human", {"reason": reason, "summary": reason})
    best = hits[0]
    return _call("send_message", {"text": str(best["passage"]), "cite": [best["article_id"]]})


def _proactive(task: dict[str, Any], tools: set[str]) -> ModelTurn:
    """A run with no message to answer: send the definition's message, or nothing. Offline,
    nothing is made up: with no `message` written for the trigger, the run just finishes."""
    message = task.get("message")
    if message and "send_message" in tools:
        return _call("send_message", {"text": message})
    return _call("finish", {"summary": "offline: no message is written for this trigger"})


def _say(text: str) -> ModelTurn:
    return ModelTurn(text=text, stop_reason="end_turn")


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def _label_forms(label: str) -> list[str]:
    """'Tue 5 May 09:30 UTC' is named with or without its zone."""
    squashed = _squash(label)
    parts = squashed.split()
    return [squashed, " ".join(parts[:-1])] if len(parts) > 4 else [squashed]


def _last_user_text(messages: tuple[ChatMessage, ...]) -> str:
    return next((m.text for m in reversed(messages) if isinstance(m, UserText)), "")


def _offered_times(messages: tuple[ChatMessage, ...]) -> bool:
    """True when our latest message offered meeting times."""
    latest = next((t for t in reversed(_assistant_texts(messages)) if t.strip()), "")
    return OFFER in latest


def _label_of(messages: tuple[ChatMessage, ...], starts_at: str) -> str:
    """How the times offered in this run showed `starts_at`."""
    for message in messages:
        if isinstance(message, ToolResult) and message.name == "find_meeting_times":
            for slot in json.loads(message.content).get("times", []):
                if slot["starts_at"] == starts_at:
                    return str(slot["label"])
    return starts_at


def _call(name: str, arguments: dict[str, Any]) -> ModelTurn:
    call = ToolCall(
        id=f"offline-{name}", name=name, arguments=arguments, raw_arguments=json.dumps(arguments)
    )
    return ModelTurn(tool_calls=(call,), stop_reason="tool_use")


def _just_recorded(request: ModelRequest) -> dict[str, Any]:
    """The answer the preceding record_answer call saved."""
    for message in reversed(request.messages):
        if isinstance(message, AssistantTurn):
            for call in message.tool_calls:
                if call.name == "record_answer" and call.arguments:
                    return {str(call.arguments["key"]): call.arguments["answer"]}
            break
    return {}


def _assistant_texts(messages: tuple[ChatMessage, ...]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        if isinstance(message, AssistantTurn):
            texts.append(message.text)
            texts += [str((c.arguments or {}).get("text", "")) for c in message.tool_calls]
    return texts


def _asked_anything(messages: tuple[ChatMessage, ...]) -> bool:
    return any(text.strip() for text in _assistant_texts(messages))


def _last_asked(
    messages: tuple[ChatMessage, ...], questions: list[dict[str, str]]
) -> dict[str, str] | None:
    """The question our most recent question-asking message asked.

    Messages that asked nothing are passed over: a check-in sent by a schedule between the
    question and its answer does not make the answer the reply to nothing (that asked the
    question again). Consecutive messages of ours reach the model as one turn, a line each,
    so each line is looked at. A question already answered is told apart by the caller.
    """
    for text in reversed(_assistant_texts(messages)):
        for line in reversed(text.splitlines()):
            asked = next((q for q in questions if line.rstrip().endswith(q["ask"])), None)
            if asked is not None:
                return asked
    return None
