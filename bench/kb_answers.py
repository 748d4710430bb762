"""What the support agent does with each question: sent, drafted for staff, or handed off.

Runs the shipped `support-deflection` definition on the offline provider (extractive answers,
no key needed) over the labelled questions of `agents/templates/kb/questions.yaml`, and over
its `outside` questions that the knowledge base cannot answer. Grounding is decided by the code
around the model, so these shares are the code's, whatever model runs:

- answerable questions: the share sent, drafted and handed off, and the share sent citing the
  labelled article;
- outside questions: the same shares; any sent answer is one the agent should not have sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from agents import catalog
from agents.definition import TEMPLATES_DIR, load_definition_file
from bot.app.wiring import App
from bot.core.settings import Settings
from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, pending_messages, record_inbound
from bot.store.models import Draft, OutboxItem
from channels.base import Channel, DeliveryResult, Sent

AGENT = "support-deflection"
OUTCOMES = ("sent", "drafted", "handed_off")


class _Nowhere(Channel):
    """The console channel, delivering nowhere: only what the agent decided is counted."""

    name = "console"

    async def deliver(self, item: Any) -> DeliveryResult:
        return Sent(f"bench-{item.id}")


@dataclass
class Shares:
    """How many questions ended each way, and how many sent answers cited the right article."""

    asked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    cited_right: int = 0

    def share(self, outcome: str) -> float:
        return self.outcomes[outcome] / self.asked if self.asked else 0.0


def outside_questions(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [str(q) for q in data.get("outside", [])]


async def answer_all(
    url: str, questions: list[tuple[str, str | None]], titles: dict[str, str], set_name: str
) -> Shares:
    """Ask each (question, labelled article path or None) as a new contact; count outcomes.

    `titles` maps an article path (as questions name it) to its title, which the sent answer's
    appended source names."""
    app = App(
        Settings(database_url=url, llm_provider="offline", default_agent=AGENT),
        quiet_seconds=0,
        seed_agents=False,
    )
    app.add_channel(_Nowhere())
    try:
        async with app.db.transaction() as session:
            await catalog.save(session, load_definition_file(TEMPLATES_DIR / f"{AGENT}.yaml"))
        shares = Shares()
        for n, (question, labelled) in enumerate(questions):
            outcome = await _ask(app, f"{set_name}-{n}", question)
            shares.asked += 1
            shares.outcomes[outcome[0]] += 1
            if outcome[0] == "sent" and labelled and f"Source: {titles[labelled]}" in outcome[1]:
                shares.cited_right += 1
        return shares
    finally:
        await app.aclose()


async def _ask(app: App, n: str, question: str) -> tuple[str, str]:
    """(outcome, the text sent) of one question from a new contact."""
    identity = Identity("console", f"bench-{n}", name=f"Customer {n}")
    async with app.db.transaction() as session:
        recorded = await record_inbound(session, InboundMessage(identity, f"q-{n}", question))
        assert recorded is not None
        conversation_id = recorded.conversation.id
        pending = await pending_messages(session, conversation_id)
    result = await app.runner.handle_inbound(conversation_id, pending)
    async with app.db.reading() as session:
        drafted = await session.scalar(
            select(Draft.id).where(Draft.conversation_id == conversation_id)
        )
        texts = (
            await session.scalars(
                select(OutboxItem.text).where(
                    OutboxItem.conversation_id == conversation_id,
                    OutboxItem.channel == "console",
                )
            )
        ).all()
    if result.status == "handed_off":
        return "handed_off", ""
    return ("drafted" if drafted else "sent"), "\n".join(texts)
