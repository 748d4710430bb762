"""Setting aside input that cannot be read, so one bad update or email never stops a channel.

The raw input is kept in the store with the error; the channel's cursor moves past it. The
first time an input is set aside it is audited, and staff hear about it at most once an hour
per source and kind (the alert's outbox key names the hour). Customers' words stay in the
dead-letter row, never in logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.desk.staff import notify_staff
from bot.store import deadletters
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx
from bot.store.models import DeadLetter
from bot.store.types import utcnow

log = logging.getLogger("bot.deadletters")


async def set_aside(
    session: Tx,
    audit: AuditLog,
    *,
    source: str,
    kind: str,
    ref: str | None,
    payload: bytes,
    error: str,
) -> DeadLetter:
    """Keep `payload` as a dead letter in the caller's transaction; audit and alert once."""
    kept = await deadletters.keep(
        session, source=source, kind=kind, ref=ref, payload=payload, error=error
    )
    letter = kept.letter
    if not kept.new:
        log.info("%s input %s set aside again as dead letter %s", source, ref, letter.id)
        return letter
    log.warning("%s input %s set aside as dead letter %s (%s)", source, ref, letter.id, kind)
    await audit.append(
        session,
        "dead_letter",
        {"id": letter.id, "source": source, "kind": kind, "ref": ref, "error": error[:500]},
        actor=f"channel:{source}",
    )
    await notify_staff(
        session,
        key=f"dead-letter:{source}:{kind}:{utcnow():%Y%m%d%H}",
        conversation_id=None,
        contact_id=None,
        kind="alert",
        text=f"⚠️ An incoming {source} item could not be read and was set aside "
        f"(dead letter #{letter.id}, {kind}). Nothing was answered. "
        f"See `crmbot deadletters show {letter.id}`; further ones this hour are not announced.",
    )
    return letter


Feed = Callable[[DeadLetter], Awaitable[None]]


class Retrier:
    """Feeds the dead letters a person queued for retry (`crmbot deadletters retry`) back
    through their channel's normal intake, so a fixed parser or a freed store takes them."""

    def __init__(self, db: Database, source: str, feed: Feed, every: float = 2.0) -> None:
        self.db, self.source, self.feed, self.every = db, source, feed, every

    async def once(self) -> int:
        async with self.db.transaction() as session:
            letters = await deadletters.queued(session, self.source)
        for letter in letters:
            async with self.db.transaction() as session:
                await deadletters.begin_retry(session, letter.id)
            log.info("retrying dead letter %s (%s)", letter.id, letter.ref)
            await self.feed(letter)
        return len(letters)

    async def run_forever(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self.every)
