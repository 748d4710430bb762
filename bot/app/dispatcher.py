"""Per-conversation scheduling: one run at a time per conversation, in order, in any process.

Channels record a message and call `notify`. Each conversation gets at most one driver task in
this process, and the conversation's lease in the database keeps other processes out. A driver
waits for the conversation to be quiet for `quiet_seconds` (people send bursts), then answers
every pending message in one run, and loops while more arrived meanwhile. A periodic sweep
picks up conversations whose messages were recorded by a worker that could not take the lease,
or that a stopped worker left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from agents.run_state import RunOutcome
from agents.runner import AgentRunner
from bot.store import leases
from bot.store.db import Database, Tx
from bot.store.inbox import conversations_with_pending, pending_messages
from bot.store.models import Message

log = logging.getLogger("bot.dispatcher")


lease_name = leases.conversation_lease


class Dispatcher:
    """Drives conversations with pending inbound messages through the engine."""

    def __init__(
        self,
        db: Database,
        runner: AgentRunner,
        *,
        worker_id: str,
        lease_seconds: float,
        quiet_seconds: float = 0.0,
        max_concurrent_runs: int = 500,
        sweep_seconds: float = 2.0,
        after_run: Callable[[], None] | None = None,
        activity: Callable[[int], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.db, self.runner = db, runner
        self.worker_id, self.lease_seconds = worker_id, lease_seconds
        self.quiet_seconds, self.sweep_seconds = quiet_seconds, sweep_seconds
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._drivers: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._last_seen: dict[int, float] = {}
        self._after_run = after_run or (lambda: None)
        self._activity = activity or (lambda _conversation_id: contextlib.nullcontext())

    def notify(self, conversation_id: int) -> None:
        """A message for `conversation_id` was recorded; make sure it will be answered."""
        self._last_seen[conversation_id] = time.monotonic()
        if conversation_id in self._drivers:
            self._again.add(conversation_id)
            return
        task = asyncio.create_task(self._drive(conversation_id), name=f"conv-{conversation_id}")
        self._drivers[conversation_id] = task

    async def take_turns(self, session: Tx, conversation_ids: list[int]) -> None:
        """In the transaction that records new messages: take their conversations' leases
        for this worker where they are free, so the runs `notify` starts need no commit of
        their own to take them. A lease another worker holds stays its: that worker's run
        sees the new messages when it looks for more before closing."""
        names = [lease_name(cid) for cid in conversation_ids]
        await leases.try_acquire_many(session, names, self.worker_id, self.lease_seconds)

    async def _drive(self, conversation_id: int) -> None:
        try:
            while True:
                await self._wait_quiet(conversation_id)
                self._again.discard(conversation_id)
                async with self._slots:
                    await self._run_leased(conversation_id)
                if conversation_id not in self._again:
                    return
        except Exception:
            log.exception("conversation %s: driver failed; the sweep will retry", conversation_id)
        finally:
            self._drivers.pop(conversation_id, None)
            self._last_seen.pop(conversation_id, None)

    async def _wait_quiet(self, conversation_id: int) -> None:
        while self.quiet_seconds > 0:
            waited = time.monotonic() - self._last_seen.get(conversation_id, 0.0)
            if waited >= self.quiet_seconds:
                return
            await asyncio.sleep(self.quiet_seconds - waited)

    async def _run_leased(self, conversation_id: int) -> None:
        """Take the conversation's lease and answer its pending messages, run after run.

        What is pending is read once the lease is held (never answering what another worker
        just answered), and finding nothing more and giving the lease back is one
        transaction, the run's last. On the common path the intake took the lease already
        (`take_turns`): seeing that is a read, and the run starts without a commit.
        """
        name = lease_name(conversation_id)
        async with self.db.reading() as session:
            held = await leases.holder(session, name) == self.worker_id
            pending = await pending_messages(session, conversation_id) if held else []
        if not held or not pending:
            async with self.db.transaction() as session:
                if not await leases.try_acquire(session, name, self.worker_id, self.lease_seconds):
                    log.debug("conversation %s is leased by another worker", conversation_id)
                    return
                pending = await pending_messages(session, conversation_id)
                if not pending:
                    await leases.release(session, name, self.worker_id)
                    return
        released = False
        after: list[Message] | None = None

        async def last_look(session: Tx, outcome: RunOutcome) -> None:
            # In the run's closing transaction, after its messages are marked answered. A
            # message notified before this read was committed before it, so the read covers
            # it: without the discard, each message of a burst would cost the driver one more
            # pass (a lease taken and given back) that finds nothing.
            del outcome  # whatever the run did, what is pending now is what counts
            nonlocal after
            self._again.discard(conversation_id)
            after = await pending_messages(session, conversation_id)
            if not after:
                await leases.release(session, name, self.worker_id)

        try:
            while pending:
                after, released = None, False
                async with self._activity(conversation_id):
                    outcome = await self.runner.handle_inbound(
                        conversation_id, pending, on_close=last_look
                    )
                self._after_run()
                if after is None:  # the run ended without its closing transaction
                    async with self.db.transaction() as session:
                        await last_look(session, outcome)
                released = not after  # known only once the transaction committed
                pending = after or []
        finally:
            if not released:
                async with self.db.transaction() as session:
                    await leases.release(session, name, self.worker_id)

    async def sweep_once(self) -> int:
        """Notify every conversation that has unanswered messages and no driver here."""
        async with self.db.transaction() as session:
            waiting = await conversations_with_pending(session)
        fresh = [cid for cid in waiting if cid not in self._drivers]
        for conversation_id in fresh:
            self.notify(conversation_id)
        return len(fresh)

    async def run_sweeper(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.sweep_seconds)

    async def idle(self) -> None:
        """Wait until no conversation is being driven in this process."""
        while self._drivers:
            await asyncio.gather(*list(self._drivers.values()), return_exceptions=True)

    async def aclose(self) -> None:
        """Let running drivers finish their current run (shutdown is graceful)."""
        await self.idle()
