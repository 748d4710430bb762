"""Refused requests, audited in aggregate: one row per source, reason and minute.

Anyone can send a webhook request with a wrong secret, or press a button they may not press,
as often as they like. One audit row each would let them grow the audit table (and the log)
without any credentials. So refusals are counted in memory, and each minute's count per source
and reason becomes one `refused` audit row when the minute has passed, or at shutdown; only the
first refusal of each such count is logged at WARNING. Memory stays small: sources and reasons
are fixed strings of our code, and each count keeps at most a few sample details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.store.audit import AuditLog, Entry
from bot.store.db import Database

log = logging.getLogger("bot.refusals")
MINUTE = 60.0
SAMPLES = 5
"""Details kept per count, to show who was refused without storing all of them."""

_Key = tuple[str, str, int]
"""(source, reason, minute number since the epoch)."""


@dataclass
class _Count:
    first_at: float
    last_at: float
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, at: float, detail: dict[str, Any] | None) -> None:
        self.count += 1
        self.last_at = max(self.last_at, at)
        if detail:
            self._sample(detail)

    def merge(self, other: _Count) -> None:
        self.count += other.count
        self.first_at, self.last_at = (
            min(self.first_at, other.first_at),
            max(self.last_at, other.last_at),
        )
        for sample in other.samples:
            self._sample(sample)

    def _sample(self, detail: dict[str, Any]) -> None:
        if len(self.samples) < SAMPLES and detail not in self.samples:
            self.samples.append(detail)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class Refusals:
    """Counts refusals per (source, reason, minute) and audits each count once.

    `clock` gives the wall-clock time in seconds (tests pass one they can move). After
    `aclose` refusals are still logged, but no longer audited.
    """

    def __init__(
        self, db: Database, audit: AuditLog, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db, self.audit, self.clock = db, audit, clock
        self._open: dict[_Key, _Count] = {}
        self._timer: asyncio.Task[None] | None = None
        self._closed = False

    async def refuse(self, source: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        """Count one refusal; writes the counts of minutes that have passed."""
        now = self.clock()
        key = (source, reason, int(now // MINUTE))
        count = self._open.get(key)
        if count is None:
            count = self._open[key] = _Count(first_at=now, last_at=now)
            log.warning(
                "refused (%s) from %s: %s; more this minute are only counted",
                reason,
                source,
                detail or {},
            )
        count.add(now, detail)
        await self.flush(closed_only=True)
        self._keep_timer()

    async def flush(self, *, closed_only: bool = False) -> bool:
        """Audit the counts of passed minutes (all counts unless `closed_only`).

        False if the audit could not be written; the counts are kept for the next try.
        """
        due = self._take(closed_only)
        if not due:
            return True
        try:
            entries = [Entry("refused", _payload(key, count), key[0]) for key, count in due.items()]
            async with self.db.transaction() as session:
                await self.audit.append_many(session, entries)
        except Exception:
            log.exception("could not audit %d refusal counts; keeping them", len(due))
            self._put_back(due)
            return False
        except BaseException:  # cancelled mid-write (shutdown): the final flush writes them
            self._put_back(due)
            raise
        return True

    async def aclose(self) -> None:
        """Stop the timer and audit every count, including the current minute's."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self.flush()

    def _take(self, closed_only: bool) -> dict[_Key, _Count]:
        current = int(self.clock() // MINUTE)
        keys = [key for key in self._open if not closed_only or key[2] < current]
        return {key: self._open.pop(key) for key in keys}

    def _put_back(self, counts: dict[_Key, _Count]) -> None:
        for key, count in counts.items():
            if key in self._open:
                count.merge(self._open[key])
            self._open[key] = count

    def _keep_timer(self) -> None:
        """A minute closes even when no further refusal comes: a timer writes it then."""
        if self._closed or (self._timer is not None and not self._timer.done()):
            return
        self._timer = asyncio.create_task(self._flush_when_minutes_close(), name="refusals")

    async def _flush_when_minutes_close(self) -> None:
        while self._open:
            ends = (min(minute for _, _, minute in self._open) + 1) * MINUTE
            await asyncio.sleep(max(ends - self.clock(), 0.0) + 0.1)
            if not await self.flush(closed_only=True):
                await asyncio.sleep(MINUTE)  # the database is failing; try again later


def _payload(key: _Key, count: _Count) -> dict[str, Any]:
    source, reason, minute = key
    payload: dict[str, Any] = {
        "source": source,
        "reason": reason,
        "count": count.count,
        "minute": _iso(minute * MINUTE),
        "first_at": _iso(count.first_at),
        "last_at": _iso(count.last_at),
    }
    if count.samples:
        payload["samples"] = count.samples
    return payload
