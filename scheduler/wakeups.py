"""Running the wake-ups that are due: the gate in code, then one proactive run each.

For each claimed wake-up, before any model call:

- the agent must still exist and be enabled;
- the proactive rules that concern the contact (opted out, conversation with staff or
  closed, weekly cap, quiet hours) and the breaker: a "no" skips it, quiet hours and the
  breaker postpone it (it is not dropped);
- the trigger's `when` conditions must hold;
- the contact must be reachable on some channel.

Then the conversation's lease is taken (the same one inbound runs take, so one run at a time
per conversation in any process; a busy conversation postpones the wake-up a minute) and
the run goes; the commit that closes the run also marks the wake-up done, with how it ended,
and releases the lease. Every outcome is audited with what started it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agents import catalog
from agents.definition import AgentDefinition, Conditions
from agents.run_state import RunOutcome
from agents.runner import AgentRunner
from bot.core.errors import NotFoundError
from bot.desk.proactive import ProactiveRules, Verdict
from bot.store import leases
from bot.store import wakeups as store
from bot.store.audit import AuditLog
from bot.store.contacts import get_contact
from bot.store.conversations import open_conversation
from bot.store.db import Database, Tx
from bot.store.models import Wakeup
from bot.store.types import utcnow
from scheduler.conditions import unmet
from scheduler.targets import target_for

log = logging.getLogger("scheduler.wakeups")
BUSY_RETRY = timedelta(minutes=1)
BREAKER_RETRY = timedelta(minutes=15)
CLAIM_SECONDS = 600.0


class WakeupWorker:
    """Claims due wake-ups and runs them, one at a time per conversation."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        runner: AgentRunner,
        rules: ProactiveRules,
        *,
        worker_id: str,
        lease_seconds: float,
        clock: Callable[[], datetime] = utcnow,
        batch: int = 20,
    ) -> None:
        self.db, self.audit, self.runner, self.rules = db, audit, runner, rules
        self.worker_id, self.lease_seconds = worker_id, lease_seconds
        self.turn_owner = leases.proactive_owner(worker_id)
        """Who this worker's wake-ups hold conversations as: not the dispatcher's name, so an
        inbound run and a wake-up of one process never share a conversation."""
        self.clock, self.batch = clock, batch

    async def run_due(self) -> int:
        """Claim and run due wake-ups until none is left; returns how many were handled.

        While its claims run, the worker holds its `runner_lease`, which the heartbeat keeps
        alive: when the worker dies, another one claims its wake-ups once that lease lapsed
        (`LEASE_SECONDS`), not only when their claims run out."""
        handled = 0
        runner = store.runner_lease(self.worker_id)
        while True:
            now = self.clock()
            async with self.db.transaction() as session:
                claimed = await store.claim_due(
                    session, now, self.worker_id, limit=self.batch, claim_seconds=CLAIM_SECONDS
                )
                if claimed:
                    await leases.try_acquire(session, runner, self.worker_id, self.lease_seconds)
                elif handled:
                    await leases.release(session, runner, self.worker_id)
            if not claimed:
                return handled
            # A batch runs at once: proactive runs mostly wait on the model, and each holds
            # its own conversation's lease (two wake-ups of one conversation take turns).
            await asyncio.gather(*(self._handle_logged(wakeup) for wakeup in claimed))
            handled += len(claimed)

    async def _handle_logged(self, wakeup: Wakeup) -> None:
        try:
            await self._handle(wakeup)
        except Exception:
            log.exception("wake-up %s failed; it is retried when its claim lapses", wakeup.id)

    async def _handle(self, wakeup: Wakeup) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            decision = await self._gate(session, wakeup, now)
            if isinstance(decision, Verdict):
                await self._settle(session, wakeup, decision, now)
                return
            agent, conversation_id = decision
            if not await leases.try_acquire(
                session,
                leases.conversation_lease(conversation_id),
                self.turn_owner,
                self.lease_seconds,
            ):
                await store.postpone(session, wakeup.id, now + BUSY_RETRY, "conversation busy")
                return
        await self._run(wakeup, agent, conversation_id)

    async def _gate(
        self, session: Tx, wakeup: Wakeup, now: datetime
    ) -> Verdict | tuple[AgentDefinition, int]:
        """A verdict that stops or delays the wake-up, or the agent and the conversation to
        run it in."""
        try:
            stored = await catalog.get(session, wakeup.agent_name)
        except NotFoundError:
            return Verdict("cancel", f"agent {wakeup.agent_name} no longer exists")
        if not stored.enabled:
            return Verdict("cancel", f"agent {wakeup.agent_name} is disabled")
        contact = await get_contact(session, wakeup.contact_id)
        target = await target_for(session, contact)
        if target.channel is None:
            return Verdict("cancel", "the contact has no address on any channel")
        conversation_id = target.conversation.id if target.conversation else None
        verdict = await self.rules.standing(session, contact, conversation_id, now)
        if verdict.action == "send":
            verdict = await self.rules.breaker_verdict(session, now)
        if verdict.action == "hold":
            return Verdict("postpone", verdict.reason, now + BREAKER_RETRY)
        if verdict.action != "send":
            return verdict
        when = Conditions.model_validate(wakeup.trigger.get("when") or {})
        reason = await unmet(
            session,
            when,
            contact_id=contact.id,
            since=wakeup.since,
            now=now,
            deal_id=wakeup.deal_id,
        )
        if reason is not None:
            return Verdict("cancel", f"condition not met: {reason}")
        if target.conversation is None:
            conversation = await open_conversation(session, contact.id, target.channel)
            await session.flush()
            return stored.definition, conversation.id
        return stored.definition, target.conversation.id

    async def _settle(self, session: Tx, wakeup: Wakeup, verdict: Verdict, now: datetime) -> None:
        if verdict.action == "postpone":
            assert verdict.until is not None
            await store.postpone(session, wakeup.id, verdict.until, verdict.reason)
        else:
            await store.finish(session, wakeup.id, "skipped", verdict.reason, now)
        await self.audit.append(
            session,
            "wakeup_" + ("postponed" if verdict.action == "postpone" else "skipped"),
            {
                "wakeup_id": wakeup.id,
                "agent": wakeup.agent_name,
                "contact_id": wakeup.contact_id,
                "cause": wakeup.cause,
                "reason": verdict.reason,
                "until": verdict.until.isoformat() if verdict.until else None,
            },
            actor="scheduler",
        )

    async def _run(self, wakeup: Wakeup, agent: AgentDefinition, conversation_id: int) -> None:
        lease = leases.conversation_lease(conversation_id)
        written, settled = False, False

        async def settle(session: Tx, outcome: RunOutcome) -> None:
            # The wake-up is done in the commit that closes its run: a worker that dies in
            # between cannot leave a run that sent its message and a wake-up still claimed,
            # run again once the claim runs out.
            nonlocal written
            if outcome.status == "postponed":
                until = self.clock() + BUSY_RETRY
                await self._settle(
                    session, wakeup, Verdict("postpone", outcome.reason, until), self.clock()
                )
            else:
                result = f"{outcome.status}: {outcome.reason}"
                await store.finish(session, wakeup.id, "done", result, self.clock(), outcome.run_id)
            await leases.release(session, lease, self.turn_owner)
            written = True

        try:
            trigger: dict[str, Any] = wakeup.trigger
            outcome = await self.runner.handle_proactive(
                conversation_id,
                agent,
                trigger=str(trigger.get("type", "schedule")),
                started_by=started_by(wakeup.cause),
                cause={**wakeup.cause, "wakeup_id": wakeup.id},
                task={"instruction": trigger.get("instruction"), "message": trigger.get("message")},
                on_close=settle,
            )
            settled = written  # the run returned, so its closing transaction committed
            if not settled:  # skipped or postponed before a run opened: nothing closed
                async with self.db.transaction() as session:
                    await settle(session, outcome)
                settled = True
        finally:
            if not settled:
                async with self.db.transaction() as session:
                    await leases.release(session, lease, self.turn_owner)
        log.info(
            "wake-up %s (%s) ran: %s: %s",
            wakeup.id,
            wakeup.agent_name,
            outcome.status,
            outcome.reason,
        )


def started_by(cause: dict[str, Any]) -> str:
    """Who a proactive run's records name as having started it."""
    if "job" in cause:
        return f"job:{cause['job']}@{cause.get('scheduled_for')}"
    if "event_id" in cause:
        return f"event:{cause['event_id']}"
    return f"follow-up:{cause.get('follow_up_of')}"
