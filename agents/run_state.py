"""What one agent run knows about itself while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.definition import AgentDefinition
from agents.guardrails import OutputPolicy
from agents.messages import Usage
from bot.store.audit import Entry


@dataclass
class RunState:
    """Identity, scope and counters of a run. Tools act only for `contact_id`."""

    run_id: str
    agent: AgentDefinition
    contact_id: int
    conversation_id: int
    channel: str
    trigger: str
    """inbound | schedule | event | test"""
    started_by: str
    policy: OutputPolicy
    dry_run: bool = False
    """Plan only: tools that change state or send report what they would do."""
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = field(default_factory=Decimal)
    policy_blocks: int = 0
    messages_sent: int = 0
    call_counts: dict[str, int] = field(default_factory=dict)
    answering: frozenset[int] = frozenset()
    """For a resumed run: the inbound messages it was first started to answer."""
    resumed_with_reply: bool = False
    """A resumed inbound run whose reply was already queued before the restart."""
    unwritten: list[Entry] = field(default_factory=list)
    """Audit records (model calls) held back to be written in the transaction of the next
    state change, which they explain; never later than that."""

    def entry(self, kind: str, payload: dict[str, Any]) -> Entry:
        """An audit record of this run, by its agent, about its conversation."""
        return Entry(kind, payload, self.actor, self.run_id, self.conversation_id)

    def take_unwritten(self) -> list[Entry]:
        entries, self.unwritten = self.unwritten, []
        return entries

    @property
    def actor(self) -> str:
        return f"agent:{self.agent.name}"
