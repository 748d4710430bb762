"""One worker at a time for a job that must not run twice (a Telegram poller, a mailbox reader).

The lease lives in `channel_cursors` and expires unless renewed, so a crashed worker's job is
taken over; a clean stop releases it so the next worker need not wait it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.store import cursors
from bot.store.db import Database


class Lease:
    """A renewable lease named `key`, held by `owner` for `seconds` at a time."""

    def __init__(self, db: Database, key: str, owner: str, seconds: float) -> None:
        self.db, self.key, self.owner, self.seconds = db, key, owner, seconds
        self._renewed_at = 0.0

    async def hold(self) -> bool:
        """Take or renew the lease; False while another worker holds it."""
        async with self.db.transaction() as session:
            held = await cursors.try_hold(session, self.key, self.owner, self.seconds)
        self._renewed_at = asyncio.get_running_loop().time()
        return held

    async def renew_if_due(self) -> bool:
        """Renew once a third of the lease has passed; False if it was lost meanwhile."""
        if asyncio.get_running_loop().time() - self._renewed_at < self.seconds / 3:
            return True
        return await self.hold()

    async def release(self) -> None:
        async with self.db.transaction() as session:
            await cursors.release(session, self.key, self.owner)

    async def run(self, step: Callable[[], Awaitable[None]]) -> None:
        """Repeat `step` while this worker holds the lease; wait while another does; release
        it when stopped."""
        try:
            while True:
                if not await self.hold():
                    await asyncio.sleep(self.seconds / 3)
                    continue
                await step()
        finally:
            await self.release()
