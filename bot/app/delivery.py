"""The outbox worker: delivers queued messages through their channel, exactly once.

A pass reads the due heads (each conversation's oldest unsent item) and works them
concurrently, each on its own:

1. `channel.pace(item)`: with no rate-limit slot now the item stays `pending`, unclaimed, and
   is made due after the wait (at the end of the pass); that is not an attempt.
2. One of the channel's connections (`max_in_flight`), then the claim: `pending` -> `sending`,
   committed right before the request. If another worker claimed it first (both may have
   read the same heads), skip it. A channel's `spacing` (one message a second to a Telegram
   private chat) is part of the claim, so it holds across every worker: a recipient that any
   worker sent to too recently is held back like a send without a slot.
3. `channel.deliver(item)`, then at once the classified result, committed: `sent`; `pending`
   again with backoff (or the channel's own `retry_after`); `failed`; or `unknown`, which is
   never retried without a person.

Claims and outcomes that wait at the same moment share one commit (`GroupCommit`): idle,
each commits alone and at once; under load, a commit carries a batch.

So one slow send never delays recording the others, and a worker killed mid-pass leaves
`sending` only the items whose request had started: those may have reached the server and
become `unknown` (with a staff alert) once their claim runs out, or sooner, once the worker's
sender lease lapses without heartbeats. Everything else is still `pending` and goes out
normally. `python -m bench.crash_outbox` measures how many sends a kill leaves unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import assert_never

from bot.core.backoff import Backoff
from bot.desk.proactive import ProactiveRules
from bot.desk.staff import alert_staff
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx, is_transient
from bot.store.grouped import GroupCommit
from bot.store.leases import Lease
from bot.store.models import Contact, OutboxItem
from bot.store.types import utcnow
from channels.base import Channel, DeliveryResult, Failed, RetryLater, Sent, Unknown

log = logging.getLogger("bot.delivery")
RECORD_RETRY = Backoff(initial=0.2, maximum=5.0)
"""How a send's outcome is written again while the database cannot take it."""


class OutboxWorker:
    """Delivers one channel's outbox items."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        channel: Channel,
        *,
        worker_id: str,
        retry: Backoff | None = None,
        poll_seconds: float = 1.0,
        claim_seconds: float = 120.0,
        lease_seconds: float | None = None,
        batch: int = 50,
        rules: ProactiveRules | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`claim_seconds` caps how long a send may be in flight before it counts as lost
        mid-send (it must exceed the channel's longest request timeout). With `lease_seconds`
        the worker holds a sender lease while sends are in flight, which the process's
        `Heartbeat` keeps alive: if the worker dies, its sends are declared unknown once that
        lease lapses instead of at the end of their claims."""
        self.db, self.audit, self.channel = db, audit, channel
        self.worker_id, self.retry = worker_id, retry or Backoff()
        self.poll_seconds, self.claim_seconds, self.batch = poll_seconds, claim_seconds, batch
        self._soonest_hold: float | None = None
        """Seconds until the first item the last pass held back for pacing may go."""
        self._lease = (
            Lease(db, outbox.sender_lease(channel.name, worker_id), worker_id, lease_seconds)
            if lease_seconds is not None
            else None
        )
        self.rules, self.clock = rules, clock
        self._in_flight = asyncio.Semaphore(channel.max_in_flight or batch)
        self._claiming = asyncio.Lock()
        self._writes = GroupCommit(db)
        """Claims and outcomes: those that wait at the same moment share a commit."""
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: deliver now instead of at the next poll."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """One pass over the due items. Returns how many were handed to the channel."""
        # A pass is a read: its claims are the writes. A sender that vanished mid-send is rare,
        # so its items are looked for in the read and only then expired, with a commit.
        async with self.db.reading() as session:
            stale = await outbox.any_stale_claims(session)
            items = [] if stale else await self._due(session)
        if stale:
            async with self.db.transaction() as session:
                await self._expire_stale(session)
                items = await self._due(session)  # an expired head unblocks its queue
        if not items:
            return 0
        if self._lease is not None:
            # Before any claim, so a claim never outlives its lease. Taken once and then kept
            # by the heartbeat (and released when the worker stops), not taken and given back
            # every pass: that would be two commits more on every delivery.
            await self._lease.renew_if_due()
        paced: dict[int, float] = {}
        outcomes = await asyncio.gather(
            *(self._work(item, paced) for item in items), return_exceptions=True
        )
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("outbox %s: delivery step failed", item.id, exc_info=outcome)
        if paced:
            # After the pass, in one transaction: the next pass is the first to read them again,
            # and the writes never queue ahead of an outcome waiting to be recorded.
            async with self.db.transaction() as session:
                await outbox.hold_back(session, paced)
        self._soonest_hold = min(paced.values()) if paced else None
        return sum(outcome is True for outcome in outcomes)

    async def _due(self, session: Tx) -> list[OutboxItem]:
        return await outbox.due_heads(
            session,
            self.channel.name,
            limit=self.batch,
            now=self.clock(),
            first_kinds=self.channel.first_kinds,
        )

    async def _work(self, candidate: OutboxItem, paced: dict[int, float]) -> bool:
        """Pace, claim, send and record one item; True if it was handed to the channel.

        An item without a rate-limit slot goes into `paced` with its wait, unclaimed.
        """
        async with self._in_flight:  # taken before the claim: a claimed item never waits
            item = await self._claim(candidate, paced)
            if item is None:
                return False  # paced, claimed by another worker first, or held back meanwhile
            await self._record(item, await self._deliver(item))
        return True

    async def _claim(self, candidate: OutboxItem, paced: dict[int, float]) -> OutboxItem | None:
        if self._lease is not None:
            await self._lease.renew_if_due()  # a long pass outlives a lease without heartbeats
        # One slot and claim at a time, the slot taken right before its claim commits: a
        # slot taken earlier would let its request reach the server late, bunched with the
        # next one, and draw a 429 (with the next claims queued behind this one's commit,
        # slot-to-request was 130 ms at p50, not 11, and `bench.sending` drew 12-38 429s).
        # The outcomes of the sends answered meanwhile share the claim's commit.
        async with self._claiming:
            wait = await self.channel.pace(candidate)
            if wait is not None:
                paced[candidate.id] = wait
                return None
            try:
                return await self._writes.write(functools.partial(self._claim_in, candidate, paced))
            except Exception as error:
                if is_transient(error):
                    # The connection went during the claim's commit, which may have landed:
                    # the item would sit `sending` until its claim ran out, and then be
                    # flagged "may not have been delivered" though its request never left.
                    release = functools.partial(
                        outbox.release_claim, item_id=candidate.id, owner=self.worker_id
                    )
                    await self._write_while_claimed(candidate, "its claim back", release)
                raise

    async def _claim_in(
        self, candidate: OutboxItem, paced: dict[int, float], session: Tx
    ) -> OutboxItem | None:
        spacing = self.channel.spacing(candidate)
        now = self.clock()
        if candidate.automatic and not await self._may_send(session, candidate, now):
            return None
        claimed = await outbox.claim(
            session,
            candidate.id,
            self.worker_id,
            claim_seconds=self.claim_seconds,
            now=now,
            spacing=spacing,
        )
        if claimed is None and spacing is not None:
            # A request to this recipient left moments ago from another worker (this
            # process's own were paced already): held back like a send without a slot.
            wait = await outbox.wait_for_spacing(session, candidate, spacing, now)
            if wait > 0:
                paced[candidate.id] = wait
        return claimed

    async def _may_send(self, session: Tx, candidate: OutboxItem, now: datetime) -> bool:
        """The proactive rules, in the claim's transaction: nothing can change in between."""
        if self.rules is None:
            log.error("outbox %s is automatic and this worker has no rules; held", candidate.id)
            return False
        return await self.rules.gate(session, candidate, now)

    async def _deliver(self, item: OutboxItem) -> DeliveryResult:
        try:
            return await self.channel.deliver(item)
        except Exception as error:  # a channel bug: we cannot know if it went out
            log.exception("outbox %s: channel %s raised", item.id, self.channel.name)
            return Unknown(f"{type(error).__name__}: {error}")

    async def _record(self, item: OutboxItem, result: DeliveryResult) -> None:
        """Write the outcome of one send, in a transaction of its own, as soon as it is known.

        The outcome is known here and nowhere else: when the database cannot take it (locked,
        restarting, connection lost), it is written again until the claim runs out, not
        dropped. Dropped, the item would stay `sending` until its claim expired, then count
        as lost mid-send: a message that did arrive flagged to staff as "may not have", and
        the conversation's next replies held up behind it all that time.
        """

        async def record(session: Tx) -> None:
            if await self._apply(session, item, result):
                await self._audit_delivery(session, item, result)

        await self._write_while_claimed(item, type(result).__name__, record)

    async def _write_while_claimed(
        self, item: OutboxItem, what: str, write: Callable[[Tx], Awaitable[None]]
    ) -> None:
        """Run `write` in a transaction, again and again while the database is away, until
        the item's claim would run out; only the data's errors are raised at once."""
        deadline = asyncio.get_running_loop().time() + self.claim_seconds
        for attempt in itertools.count(1):
            try:
                await self._writes.write(write)
                return
            except Exception as error:
                wait = RECORD_RETRY.delay(attempt)
                if not is_transient(error) or asyncio.get_running_loop().time() + wait > deadline:
                    raise
                log.warning(
                    "outbox %s: could not record %s (%s); again in %.1fs",
                    item.id,
                    what,
                    type(error).__name__,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _apply(self, session: Tx, item: OutboxItem, result: DeliveryResult) -> bool:
        """Move the item on after `result`; False when it is not worth an audit record."""
        match result:
            case Sent(external_id):
                await outbox.mark_sent(session, item.id, external_id, self.clock())
            case RetryLater(error, after, throttled) if (
                throttled or item.attempts + 1 < self.retry.max_attempts
            ):
                delay = after if after is not None else self.retry.delay(item.attempts + 1)
                await outbox.mark_retry(session, item.id, error, delay, counts=not throttled)
                return not throttled  # our own pacing is nothing worth a record
            case RetryLater(error, _, _):
                await outbox.mark_failed(session, item.id, f"gave up: {error}")
                await alert_staff(session, item, "was not delivered", error)
            case Failed(error, unreachable):
                await outbox.mark_failed(session, item.id, error)
                if unreachable and item.contact_id is not None:
                    contact = await session.get(Contact, item.contact_id)
                    if contact is not None:
                        contact.unreachable = True
                await alert_staff(session, item, "was not delivered", error)
            case Unknown(error):
                await outbox.mark_unknown(session, item.id, error)
                await alert_staff(session, item, "may not have been delivered", error)
            case _:
                assert_never(result)
        return True

    async def _audit_delivery(self, session: Tx, item: OutboxItem, result: DeliveryResult) -> None:
        await self.audit.append(
            session,
            "delivery",
            {
                "outbox_id": item.id,
                "channel": item.channel,
                "result": type(result).__name__,
                "detail": getattr(result, "error", None) or getattr(result, "external_id", None),
                "attempt": item.attempts + 1,
            },
            actor=f"channel:{item.channel}",
            run_id=item.run_id,
            conversation_id=item.conversation_id,
        )

    async def _expire_stale(self, session: Tx) -> None:
        for item in await outbox.expire_stale_claims(session):
            await alert_staff(session, item, "may not have been delivered", item.last_error or "")
            log.error("outbox %s: outcome unknown, needs a person (%s)", item.id, item.last_error)
            await self.audit.append(
                session,
                "delivery",
                {"outbox_id": item.id, "result": "Unknown", "detail": item.last_error},
                actor="bot.delivery",
                run_id=item.run_id,
                conversation_id=item.conversation_id,
            )

    async def run_forever(self) -> None:
        """Deliver until `stop()`; a pass in progress always finishes (no send is cut off)."""
        try:
            while not self._stopping:
                try:
                    while await self.deliver_due() and not self._stopping:
                        pass
                except Exception:
                    log.exception("outbox pass failed; retrying")
                # Items held back by pacing are due again when their slot opens: waking then,
                # not a whole poll later, is the difference between sending at the limit and
                # well under it.
                timeout = self.poll_seconds
                if self._soonest_hold is not None:
                    timeout = max(0.0, min(timeout, self._soonest_hold))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                self._wake.clear()
        finally:
            if self._lease is not None:
                with contextlib.suppress(Exception):
                    await self._lease.release()  # nothing of ours is in flight any more

    def stop(self) -> None:
        """Ask `run_forever` to return after the delivery pass it is in."""
        self._stopping = True
        self._wake.set()
