"""Perceive: turn the agent definition, the contact and the history into a model request."""

from __future__ import annotations

import json
from collections.abc import Sequence

from agents.definition import AgentDefinition
from agents.messages import AssistantTurn, ChatMessage, UserText
from bot.store.models import Message
from bot.store.types import utcnow

OPENING = "(The conversation was started by us.)"


def system_prompt(agent: AgentDefinition, card: dict[str, object], channel: str) -> str:
    lines = [
        f"You are {agent.persona.strip()}",
        f"Your goal: {agent.goal.strip()}",
        "",
        "Rules:",
        *(f"- {rule}" for rule in agent.rules),
        "- State only facts that come from tool results or this conversation. If you do not "
        "know, say so or hand off; never invent features, prices, dates or commitments.",
        "- Never promise prices, discounts, refunds, or anything contractual.",
        f"- You talk only with this contact, on {channel}. Tools act for them alone.",
        "- Reply by calling send_message, or answer in plain text (it is sent to the contact).",
        "- Call handoff_to_human as soon as the contact asks for a person, mentions "
        + ", ".join(agent.handoff_triggers)
        + ", or you cannot help with confidence. Do not just say you will pass them on.",
        "- When your turn is done, stop (call finish or answer without tools).",
    ]
    if agent.knowledge_base is not None:
        lines += [
            "- Answer questions from search_kb passages only, and pass the article_id of each "
            "article you used in send_message's cite. An answer that cites nothing, or rests "
            "on a weak match, is held for staff to review instead of being sent.",
        ]
    if agent.facts:
        lines += ["", "Facts you may state (prices and plans only from here or search_kb):"]
        lines += [f"- {fact}" for fact in agent.facts]
    if agent.questions:
        lines += [
            "",
            "Qualifying questions, in order, one per message; record each answer "
            "with record_answer:",
        ]
        lines += [f"- {q.key}: {q.ask}" for q in agent.questions]
    lines += [
        "",
        "Contact record:",
        json.dumps(card, default=str, ensure_ascii=False),
        f"Current time (UTC): {utcnow().isoformat(timespec='minutes')}",
    ]
    return "\n".join(lines)


def history_messages(stored: Sequence[Message], trigger_note: str | None) -> list[ChatMessage]:
    """Stored messages as model messages: contact -> user, ours -> assistant, merged by role."""
    merged: list[ChatMessage] = []
    for message in stored:
        if message.direction == "in":
            item: ChatMessage = UserText(message.text or "(no text; attachment only)")
        else:
            item = AssistantTurn(text=_outbound_text(message))
        merged = _append_merged(merged, item)
    if trigger_note:
        merged = _append_merged(merged, UserText(trigger_note))
    if not merged or not isinstance(merged[0], UserText):
        merged.insert(0, UserText(OPENING))
    return merged


def _outbound_text(message: Message) -> str:
    """Our message as the model sees it, marked if a person wrote it or it never arrived."""
    prefix = "[from a staff member] " if message.author == "staff" else ""
    delivery = (message.meta or {}).get("delivery")
    if delivery == "failed":
        prefix += "[NOT DELIVERED to the contact] "
    elif delivery == "unknown":
        prefix += "[delivery uncertain] "
    return prefix + message.text


def _append_merged(messages: list[ChatMessage], item: ChatMessage) -> list[ChatMessage]:
    if messages and type(messages[-1]) is type(item):
        last = messages[-1]
        if isinstance(last, UserText) and isinstance(item, UserText):
            return [*messages[:-1], UserText(f"{last.text}\n{item.text}")]
        if isinstance(last, AssistantTurn) and isinstance(item, AssistantTurn):
            return [*messages[:-1], AssistantTurn(text=f"{last.text}\n{item.text}")]
    return [*messages, item]
