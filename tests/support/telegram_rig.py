"""The real Telegram channel (python-telegram-bot and all) running against FakeTelegram."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from agents import catalog
from agents.definition import TEMPLATES_DIR
from agents.providers.base import Provider
from bot.app.wiring import App, serve
from bot.core.backoff import Backoff
from bot.core.settings import Settings
from bot.store.models import Base
from channels.telegram.service import TelegramService
from tests.support.fake_telegram import FakeTelegram
from tests.support.rows import rows

STAFF_CHAT = -1001234567890
ADMIN_ID = 7001
ALWAYS_OPEN = "mon-sun 00:00-00:00"


class TelegramRig:
    """One crmbot process with the Telegram channel, on a database that outlives it."""

    def __init__(self, fake: FakeTelegram, database_url: str, **settings: Any) -> None:
        self.fake = fake
        values: dict[str, Any] = {
            "database_url": database_url,
            "llm_provider": "offline",
            "telegram_bot_token": fake.token,
            "telegram_base_url": fake.base_url,
            "telegram_staff_chat_id": STAFF_CHAT,
            "telegram_admin_ids": [ADMIN_ID],
            "coalesce_seconds": 0.05,
            "business_hours": ALWAYS_OPEN,
            "default_agent": "lead-qualifying",
            "worker_id": "rig-worker",
        }
        self.settings = Settings(**(values | settings))
        self.app: App | None = None
        self.service: TelegramService | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, model: Provider | None = None, *, import_agents: bool = True) -> None:
        self.app = App(self.settings, seed_agents=False)
        self.service = TelegramService(self.app, self.settings)
        await self.app.start()
        if import_agents:
            async with self.app.db.transaction() as session:
                await catalog.import_paths(session, [TEMPLATES_DIR], keep_existing=True)
        if model is not None:
            self.app.providers.register("offline", model)
        for worker in self.app.outbox_workers.values():
            worker.poll_seconds = 0.05
            worker.retry = Backoff(initial=0.05, maximum=1.0)
        self.app.dispatcher.sweep_seconds = 0.2
        await self.service.start()
        self._task = asyncio.create_task(serve(self.app, [self.service.run]))

    async def stop(self) -> None:
        """A clean stop, as on SIGTERM: runs finish, the outbox flushes, everything closes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.app is not None:
            await self.app.aclose()
        if self.service is not None:
            await self.service.stop()
        self.app = self.service = self._task = None

    async def rows(self, model: type[Base], *where: Any) -> list[Any]:
        assert self.app is not None
        return await rows(self.app.db, model, *where)


async def eventually(check: Callable[[], Any], *, within: float = 10.0) -> Any:
    """Wait until `check()` (sync or async) returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)
