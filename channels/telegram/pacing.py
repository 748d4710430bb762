"""Telegram's send limits, enforced before sending rather than learned from 429s.

About 30 messages a second overall, one a second per private chat and twenty a minute per
group. A send that would exceed one is not attempted: the outbox holds it for the seconds
until a slot frees, which is not counted as a failed attempt. Telegram's own 429
`retry_after` still wins when it comes.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

OVERALL_PER_SECOND = 30
"""Telegram's free broadcasting limit; above it, sends use paid broadcasts."""
PRIVATE_PER_SECOND = 1
GROUP_PER_MINUTE = 20
GROUP_WINDOW_SECONDS = 60.0
"""The minute of `GROUP_PER_MINUTE` (a benchmark may run time faster)."""
_MAX_TRACKED_CHATS = 10_000
MARGIN = 1.05
"""Windows are 5% longer than Telegram's: a slot is taken a moment before its request leaves,
and requests that leave closer together than their slots must still fit."""


class SlidingWindow:
    """At most `limit` slots in any `seconds`-long window, the way Telegram counts.

    Unlike a token bucket as deep as the rate, it never lets a burst after a lull add to the
    steady rate; unlike evenly spaced slots, it still lets a quiet chat (a staff topic, say)
    take its whole allowance at once.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = max(1, limit), seconds * MARGIN
        self._taken: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until a slot is free; 0 when one is free now."""
        while self._taken and now - self._taken[0] >= self.seconds:
            self._taken.popleft()
        if len(self._taken) < self.limit:
            return 0.0
        return self._taken[0] + self.seconds - now

    def take(self, now: float) -> None:
        self._taken.append(now)


class Pacing:
    """Sliding windows for the whole bot and for each chat."""

    def __init__(
        self,
        overall_per_second: float = OVERALL_PER_SECOND,
        private_per_second: float = PRIVATE_PER_SECOND,
        group_per_minute: float = GROUP_PER_MINUTE,
    ) -> None:
        self.overall = SlidingWindow(round(overall_per_second), 1.0)
        self.paid_broadcast = overall_per_second > OVERALL_PER_SECOND
        """Sending faster than the free limit: each message must ask for a paid broadcast."""
        self.private_per_second, self.group_per_minute = private_per_second, group_per_minute
        self._chats: OrderedDict[int, SlidingWindow] = OrderedDict()

    def _chat(self, chat_id: int) -> SlidingWindow:
        window = self._chats.get(chat_id)
        if window is None:
            window = (
                SlidingWindow(round(self.group_per_minute), GROUP_WINDOW_SECONDS)
                if chat_id < 0
                else SlidingWindow(1, 1 / self.private_per_second)
            )
            self._chats[chat_id] = window
            if len(self._chats) > _MAX_TRACKED_CHATS:
                self._chats.popitem(last=False)
        self._chats.move_to_end(chat_id)
        return window

    def spacing(self, chat_id: int) -> float | None:
        """Seconds that must pass between two messages to `chat_id` from any worker: a private
        chat's one a second. A group's twenty a minute is this process's window alone."""
        return MARGIN / self.private_per_second if chat_id > 0 else None

    async def reserve(self, chat_id: int) -> float | None:
        """Take a slot for one message to `chat_id`; or the seconds to wait if there is none."""
        now = time.monotonic()
        chat = self._chat(chat_id)
        wait = max(chat.wait(now), self.overall.wait(now))
        if wait > 0:
            return wait
        chat.take(now)
        self.overall.take(now)
        return None
