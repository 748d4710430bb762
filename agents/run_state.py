"""What one agent run knows about itself while it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.definition import AgentDefinition
from agents.embeddings import Semantic
from agents.guardrails import OutputPolicy
from agents.messages import Usage
from bot.core.hours import BusinessHours
from bot.store import runs
from bot.store.audit import AuditLog, Entry
from bot.store.conversations import remember_agent
from bot.store.db import Tx, on_rollback


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended."""

    run_id: str | None
    agent: str | None
    status: str
    """finished | handed_off | skipped | postponed (a proactive run that must wait: try later)"""
    reason: str = ""


OnClose = Callable[[Tx, RunOutcome], Awaitable[None]]
"""A step of the caller's in the transaction that ends a run, told how it ended: what the
run's end settles for the caller (the dispatcher's look for newer messages, a wake-up marked
done) commits with it or not at all."""


@dataclass
class RunState:
    """Identity, scope and counters of a run. Tools act only for `contact_id`."""

    run_id: str
    agent: AgentDefinition
    contact_id: int
    conversation_id: int
    channel: str
    trigger: str
    """inbound | schedule | event | follow_up | test"""
    started_by: str
    policy: OutputPolicy
    dry_run: bool = False
    """Plan only: tools that change state or send report what they would do."""
    hours: BusinessHours | None = None
    """BUSINESS_HOURS: the team's working hours, which meeting slots are cut from."""
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = field(default_factory=Decimal)
    policy_blocks: int = 0
    messages_sent: int = 0
    call_counts: dict[str, int] = field(default_factory=dict)
    answering: frozenset[int] = frozenset()
    """For a resumed run: the inbound messages it was first started to answer (once its reply
    is known sent, those of them still pending: all the run closes, and all its
    `run_resumed` record lists, so a message that came later is given to the next run only)."""
    resumed_with_reply: bool = False
    """A resumed inbound run whose reply was already queued before the restart."""
    unopened: dict[str, Any] | None = None
    """The run's row, not stored yet: a new run is written with its first state change (a
    run that changed nothing before a crash leaves nothing, and its messages are answered
    by the next run)."""
    remember_agent: str | None = None
    """The router's new choice for the conversation, stored with the run's row."""
    on_close: OnClose | None = None
    """Called in the transaction that closes the run (see `AgentRunner.handle_inbound`)."""
    unwritten: list[Entry] = field(default_factory=list)
    """Audit records of steps that changed nothing (model calls, read-only or refused tool
    calls), held back to be written in the transaction of the next state change; never later
    than that, and never more than one step's worth (see `holds_a_step`)."""

    def entry(self, kind: str, payload: dict[str, Any]) -> Entry:
        """An audit record of this run, by its agent, about its conversation."""
        return Entry(kind, payload, self.actor, self.run_id, self.conversation_id)

    @property
    def holds_a_step(self) -> bool:
        """True once a whole step waits unwritten: the next step writes it, so a crash loses
        at most one step's records, and a resumed run's step count stays close to true."""
        return any(entry.kind == "tool_call" for entry in self.unwritten)

    async def write_held(self, session: Tx, audit: AuditLog, *more: Entry) -> None:
        """Write what the run held back, in `session`: its row if new, then its records.
        If the transaction does not commit, they are held again, for the next one."""
        unopened, agent, held = self.unopened, self.remember_agent, self.take_unwritten()

        def hold_again() -> None:
            self.unopened, self.remember_agent = unopened, agent
            self.unwritten[:0] = held

        on_rollback(session, hold_again)
        if unopened is not None:
            self.unopened = None
            await runs.open_run(session, id=self.run_id, **unopened)
        if agent is not None:
            self.remember_agent = None
            await remember_agent(session, self.conversation_id, agent)
        entries = [*held, *more]
        if entries:
            await audit.append_many(session, entries)

    def take_unwritten(self) -> list[Entry]:
        entries, self.unwritten = self.unwritten, []
        return entries

    question: str = ""
    """What the contact wrote that this run answers (the pending messages' text)."""
    retrieved: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Knowledge-base articles search_kb returned in this run, by id: the best passage of
    each, as the model saw it. Only these may be cited, and only they ground amounts."""

    system_prompt: str = ""
    """What the model was told; a reply repeating a long span of it is blocked."""
    semantic: Semantic | None = None
    """KB_EMBEDDINGS: the process's semantic search, fused into search_kb's ranking."""
    passages: list[str] = field(default_factory=list)
    """Every passage search_kb returned in this run, with its heading trail."""

    def grounds(self) -> str:
        """What this run may state as fact: the agent's `facts` and the passages it found."""
        return "\n".join([*self.agent.facts, *self.passages])

    task: dict[str, Any] | None = None
    """A proactive run's reason to exist: the trigger's instruction and offline message."""

    @property
    def proactive(self) -> bool:
        """Started with no message to answer: what it sends is automatic."""
        return self.trigger in ("schedule", "event", "follow_up")

    @property
    def actor(self) -> str:
        return f"agent:{self.agent.name}"
