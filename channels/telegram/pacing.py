"""Telegram's send limits, enforced before sending rather than learned from 429s.

About 30 messages a second overall, one a second per private chat and twenty a minute per
group. A send that would exceed one is not attempted: the outbox holds it for the suggested
delay, which is not counted as a failed attempt. Telegram's own 429 `retry_after` still wins
when it comes.
"""

from __future__ import annotations

from collections import OrderedDict

from aiolimiter import AsyncLimiter

OVERALL_PER_SECOND = 30
"""Telegram's free broadcasting limit; above it, sends use paid broadcasts."""
PRIVATE_PER_SECOND = 1
GROUP_PER_MINUTE = 20
_MAX_TRACKED_CHATS = 10_000


class Pacing:
    """Leaky buckets for the whole bot and each chat."""

    def __init__(
        self,
        overall_per_second: float = OVERALL_PER_SECOND,
        private_per_second: float = PRIVATE_PER_SECOND,
        group_per_minute: float = GROUP_PER_MINUTE,
    ) -> None:
        self.overall = AsyncLimiter(overall_per_second, 1)
        self.paid_broadcast = overall_per_second > OVERALL_PER_SECOND
        """Sending faster than the free limit: each message must ask for a paid broadcast."""
        self.private_per_second, self.group_per_minute = private_per_second, group_per_minute
        self._chats: OrderedDict[int, AsyncLimiter] = OrderedDict()

    def _chat(self, chat_id: int) -> AsyncLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            limiter = (
                AsyncLimiter(self.group_per_minute, 60)
                if chat_id < 0
                else AsyncLimiter(self.private_per_second, 1)
            )
            self._chats[chat_id] = limiter
            if len(self._chats) > _MAX_TRACKED_CHATS:
                self._chats.popitem(last=False)
        self._chats.move_to_end(chat_id)
        return limiter

    async def reserve(self, chat_id: int) -> float | None:
        """Take a slot for one message to `chat_id`; or the seconds to wait if there is none."""
        chat = self._chat(chat_id)
        if not chat.has_capacity():
            return 60 / self.group_per_minute if chat_id < 0 else 1 / self.private_per_second
        if not self.overall.has_capacity():
            return 1 / self.overall.max_rate
        await chat.acquire()
        await self.overall.acquire()
        return None
