"""A wired app on the test database with a fake model in place of the provider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from agents import catalog
from agents.definition import AgentDefinition, parse_definition
from agents.providers.base import Provider
from agents.runner import RunOutcome
from bot.app.wiring import App
from bot.core.settings import Settings
from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, pending_messages, record_inbound
from bot.store.models import Base
from channels.base import Channel, DeliveryResult, Sent
from tests.support.rows import rows

BASE_AGENT: dict[str, Any] = {
    "name": "tester",
    "goal": "Answer the contact's questions using only tool results.",
    "persona": "A test agent.",
    "tools": [
        "send_message",
        "get_contact",
        "get_recent_messages",
        "update_deal_stage",
        "schedule_meeting",
        "handoff_to_human",
    ],
    "max_steps": 5,
}


def agent_definition(**changes: Any) -> AgentDefinition:
    return parse_definition({**BASE_AGENT, **changes})


@dataclass
class RecordingChannel(Channel):
    """A channel that records what it delivers (for tests that are not about a protocol)."""

    name: str = "console"
    delivered: list[tuple[str, str]] = field(default_factory=list)

    async def deliver(self, item: Any) -> DeliveryResult:
        self.delivered.append((item.recipient, item.text))
        return Sent(f"sent-{item.id}")


class Harness:
    """An `App` whose agents use `model`, plus helpers to talk to it as a contact."""

    def __init__(self, database_url: str, **settings: Any) -> None:
        self.settings = Settings(database_url=database_url, llm_provider="offline", **settings)
        self.app = App(self.settings, quiet_seconds=0, seed_agents=False)
        self.channel = RecordingChannel()
        self.staff = RecordingChannel(name="staff")
        self.app.add_channel(self.channel)
        self.app.add_channel(self.staff)
        self._count = 0
        self._prefix = uuid.uuid4().hex[:8]

    @property
    def db(self) -> Any:
        return self.app.db

    def use_model(self, model: Provider) -> None:
        self.app.providers.register("offline", model)

    async def add_agent(self, **changes: Any) -> AgentDefinition:
        definition = agent_definition(**changes)
        async with self.db.transaction() as session:
            await catalog.save(session, definition)
        return definition

    async def receive(
        self,
        text: str,
        contact: str = "Ann",
        channel: str = "console",
        *,
        take_turn: bool = False,
    ) -> int:
        """Record an inbound message from `contact`; returns the conversation id. With
        `take_turn`, as a channel does: the intake also claims the conversation's turn for
        this worker (`Host.take_turns`)."""
        self._count += 1
        external_id = f"{self._prefix}-{self._count}"
        inbound = InboundMessage(Identity(channel, contact, name=contact), external_id, text)
        async with self.db.transaction() as session:
            recorded = await record_inbound(session, inbound)
            assert recorded is not None
            if take_turn:
                await self.app.take_turns(session, [recorded.conversation.id])
        return recorded.conversation.id

    async def answer(self, text: str, contact: str = "Ann") -> RunOutcome:
        """Receive `text` and run the engine once on the conversation's pending messages."""
        conversation_id = await self.receive(text, contact)
        async with self.db.transaction() as session:
            pending = await pending_messages(session, conversation_id)
        outcome = await self.app.runner.handle_inbound(conversation_id, pending)
        await self.app.flush_outbox()
        return outcome

    async def rows(self, model: type[Base], *where: Any) -> list[Any]:
        return await rows(self.db, model, *where)
