from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.add_supergroup(STAFF_CHAT, "Staff")
        yield server


@pytest.fixture
async def rig(fake: FakeTelegram, database_url: str) -> AsyncIterator[TelegramRig]:
    running = TelegramRig(fake, database_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def texts(fake: FakeTelegram, chat_id: int, thread_id: int | None = None) -> list[str]:
    """Texts the bot sent (or copied) to a chat, oldest first."""
    return [str(p.get("text", "(copy)")) for p in fake.sent(chat_id=chat_id, thread_id=thread_id)]
