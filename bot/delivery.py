"""The outbox worker: delivers queued messages through their channel, exactly once.

Each pass claims due items (one per conversation, so order holds), hands them to the channel,
and records the classified result: sent; retry later with backoff (or the channel's own
`retry_after`); failed for good; or unknown, which is never retried without a person. Items a
dead worker left mid-send are marked unknown when their claim expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import assert_never

from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import AuditLog
from bot.staff import STAFF_CHANNEL, notify_staff
from bot.store import outbox
from bot.store.db import Database
from bot.store.models import Contact, OutboxItem
from channels.base import Channel, DeliveryResult, Failed, RetryLater, Sent, Unknown

log = logging.getLogger("bot.delivery")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient delivery failures."""

    initial: float = 1.0
    maximum: float = 300.0
    max_attempts: int = 10

    def delay(self, attempts: int) -> float:
        base = min(self.initial * 2 ** max(attempts - 1, 0), self.maximum)
        return float(base * random.uniform(0.8, 1.2))


async def alert_staff(session: AsyncSession, item: OutboxItem, what: str, error: str) -> None:
    """Tell staff about a customer message that did not (or may not) arrive; never resent."""
    if item.channel == STAFF_CHANNEL:
        return  # a failing staff channel cannot report on itself; the log and audit have it
    excerpt = item.text if len(item.text) <= 300 else item.text[:299] + "…"
    await notify_staff(
        session,
        key=f"delivery:{item.id}",
        conversation_id=item.conversation_id,
        contact_id=item.contact_id,
        kind="alert",
        text=f"⚠️ A message to this customer on {item.channel} {what} ({error}). "
        f"It will not be sent again automatically:\n“{excerpt}”",
    )


class OutboxWorker:
    """Delivers one channel's outbox items."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        channel: Channel,
        *,
        worker_id: str,
        retry: RetryPolicy | None = None,
        poll_seconds: float = 1.0,
        claim_seconds: float = 120.0,
    ) -> None:
        self.db, self.audit, self.channel = db, audit, channel
        self.worker_id, self.retry = worker_id, retry or RetryPolicy()
        self.poll_seconds, self.claim_seconds = poll_seconds, claim_seconds
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: deliver now instead of at the next poll."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """One pass: claim due items and deliver them. Returns how many were attempted."""
        async with self.db.transaction() as session:
            await self._expire_stale(session)
            items = await outbox.claim_due(
                session, self.channel.name, self.worker_id, claim_seconds=self.claim_seconds
            )
        results = await asyncio.gather(*(self._deliver(item) for item in items))
        for item, result in zip(items, results, strict=True):
            await self._record(item, result)
        return len(items)

    async def _deliver(self, item: OutboxItem) -> DeliveryResult:
        try:
            return await self.channel.deliver(item)
        except Exception as error:  # a channel bug: we cannot know if it went out
            log.exception("outbox %s: channel %s raised", item.id, self.channel.name)
            return Unknown(f"{type(error).__name__}: {error}")

    async def _record(self, item: OutboxItem, result: DeliveryResult) -> None:
        async with self.db.transaction() as session:
            match result:
                case Sent(external_id):
                    await outbox.mark_sent(session, item.id, external_id)
                case RetryLater(error, after, throttled) if (
                    throttled or item.attempts + 1 < self.retry.max_attempts
                ):
                    delay = after if after is not None else self.retry.delay(item.attempts + 1)
                    await outbox.mark_retry(session, item.id, error, delay, counts=not throttled)
                    if throttled:
                        return  # our own pacing: nothing worth an audit record
                case RetryLater(error, _, _):
                    await outbox.mark_failed(session, item.id, f"gave up: {error}")
                    await alert_staff(session, item, "was not delivered", error)
                case Failed(error, unreachable):
                    await outbox.mark_failed(session, item.id, error)
                    if unreachable:
                        contact = await session.get(Contact, item.contact_id)
                        if contact is not None:
                            contact.unreachable = True
                    await alert_staff(session, item, "was not delivered", error)
                case Unknown(error):
                    await outbox.mark_unknown(session, item.id, error)
                    await alert_staff(session, item, "may not have been delivered", error)
                case _:
                    assert_never(result)
            await self.audit.append(
                session,
                "delivery",
                {
                    "outbox_id": item.id,
                    "channel": item.channel,
                    "result": type(result).__name__,
                    "detail": getattr(result, "error", None)
                    or getattr(result, "external_id", None),
                    "attempt": item.attempts + 1,
                },
                actor=f"channel:{item.channel}",
                run_id=item.run_id,
                conversation_id=item.conversation_id,
            )

    async def _expire_stale(self, session: AsyncSession) -> None:
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
        while not self._stopping:
            try:
                while await self.deliver_due() and not self._stopping:
                    pass
            except Exception:
                log.exception("outbox pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    def stop(self) -> None:
        """Ask `run_forever` to return after the delivery pass it is in."""
        self._stopping = True
        self._wake.set()
