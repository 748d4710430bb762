"""Who belongs to the staff group, as Telegram's getChatMember says, remembered briefly.

Being in the staff group is what makes someone staff: only members may answer customers,
write notes, close, resume or press confirmation buttons. Asking Telegram for every message
would cost a request each, so an answer is kept for `ttl` seconds; someone removed from the
group loses access within that time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

log = logging.getLogger("channels.telegram")
STAFF_STATUSES = {ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
MAX_ENTRIES = 1000


class StaffMembership:
    """Caches whether a user is a member of the staff chat, per user, for `ttl` seconds."""

    def __init__(
        self, chat_id: int, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.chat_id, self.ttl, self.clock = chat_id, ttl, clock
        self._known: dict[int, tuple[float, bool]] = {}

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        now = self.clock()
        known = self._known.get(user_id)
        if known is not None and known[0] > now:
            return known[1]
        try:
            member = await bot.get_chat_member(self.chat_id, user_id)
        except TelegramError as error:
            # Not remembered: a failed check says nothing about the next one.
            log.warning("getChatMember for user %s failed: %s", user_id, error)
            return False
        answer = member.status in STAFF_STATUSES
        self._remember(user_id, now, answer)
        return answer

    def _remember(self, user_id: int, now: float, answer: bool) -> None:
        if len(self._known) >= MAX_ENTRIES:
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
        if len(self._known) >= MAX_ENTRIES:  # that many people in one ttl: start afresh
            self._known.clear()
        self._known[user_id] = (now + self.ttl, answer)
