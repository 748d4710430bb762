"""Delivering updates to a running rig by long polling or by webhook, and delivering them again.

A replay is what Telegram does after a crash before the cursor was saved (polling) or after an
answer it did not get (webhook): the same update, with the same `update_id`, comes again.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from bot.store import cursors
from channels.telegram.ingest import CURSOR_KEY
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_updates import JSON
from tests.support.telegram_rig import TelegramRig, eventually

SECRET = "s3cret-token"
HOOK_PATH = "/telegram/hook"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook_rig(fake: FakeTelegram, database_url: str) -> tuple[TelegramRig, str]:
    """A rig in webhook mode on a free local port; returns it and the local URL to post to."""
    port = free_port()
    rig = TelegramRig(
        fake,
        database_url,
        telegram_webhook_url=f"https://bot.example.test:{port}{HOOK_PATH}",
        telegram_webhook_secret=SECRET,
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
    )
    return rig, f"http://127.0.0.1:{port}{HOOK_PATH}"


@dataclass
class Feed:
    """How updates reach the rig: `mode` is "polling" or "webhook"."""

    mode: str
    fake: FakeTelegram
    rig: TelegramRig
    url: str = ""

    async def deliver(self, update: JSON) -> None:
        """Hand the update (already built by the fake) to the bot; return once it is handled."""
        if self.mode == "webhook":
            assert await self.fake.webhook_post(self.url, update, secret=SECRET) == 200
            return
        await eventually(lambda: self._cursor_at_least(update["update_id"]))

    async def redeliver(self, update: JSON) -> None:
        """Deliver the same update again, as Telegram does when it was not confirmed."""
        if self.mode == "webhook":
            assert await self.fake.webhook_post(self.url, update, secret=SECRET) == 200
            return
        await eventually(lambda: self._cursor_at_least(update["update_id"]))
        await self._save_cursor(update["update_id"] - 1)
        self.fake.push_update(update)
        await eventually(lambda: self._cursor_at_least(update["update_id"]))

    async def _cursor_at_least(self, update_id: int) -> bool:
        assert self.rig.app is not None
        async with self.rig.app.db.transaction() as session:
            saved = await cursors.load(session, CURSOR_KEY)
        return saved is not None and int(saved) >= update_id

    async def _save_cursor(self, update_id: int) -> None:
        assert self.rig.app is not None
        async with self.rig.app.db.transaction() as session:
            await cursors.save(session, CURSOR_KEY, str(update_id))
