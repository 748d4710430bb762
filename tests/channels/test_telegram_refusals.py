"""Refused requests are audited in aggregate: a flood of them cannot grow the audit table."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from sqlalchemy import select

from bot.store.db import Database
from bot.store.models import AuditEvent
from tests.channels.conftest import texts
from tests.channels.telegram_feed import SECRET, webhook_rig
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import eventually

ANN, STRANGER = 501, 666


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _post_many(url: str, update: dict[str, Any], secret: str, times: int) -> list[int]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with aiohttp.ClientSession() as session:

        async def post() -> int:
            async with session.post(url, json=update, headers=headers) as response:
                return response.status

        statuses: list[int] = []
        for start in range(0, times, 50):
            statuses += await asyncio.gather(*(post() for _ in range(min(50, times - start))))
        return statuses


async def _refused_rows(database_url: str) -> list[AuditEvent]:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            query = select(AuditEvent).where(AuditEvent.kind == "refused").order_by(AuditEvent.id)
            return list((await session.execute(query)).scalars())
    finally:
        await db.dispose()


async def test_a_flood_of_wrong_secrets_is_audited_as_a_count_per_minute(
    fake: FakeTelegram, database_url: str
) -> None:
    rig, url = webhook_rig(fake, database_url)
    await rig.start()
    assert rig.app is not None
    clock = Clock()
    rig.app.refusals.clock = clock
    try:
        update = fake.user_message(ANN, "hello", first_name="Ann")
        assert set(await _post_many(url, update, "wrong", 300)) == {403}
        assert await _refused_rows(database_url) == []  # the minute is still open
        clock.now += 60
        assert set(await _post_many(url, update, "", 200)) == {403}
        [first] = await eventually(lambda: _refused_rows(database_url))
        assert first.payload["count"] == 300
        command = fake.user_message(STRANGER, "/agent list", first_name="Eve")
        assert await fake.webhook_post(url, command, secret=SECRET) == 200
        await eventually(lambda: texts(fake, STRANGER))
    finally:
        await rig.stop()
    rows = await _refused_rows(database_url)
    webhook = [r.payload for r in rows if r.payload["source"] == "telegram:webhook"]
    assert len(webhook) == 2
    assert sum(p["count"] for p in webhook) == 500
    assert {p["reason"] for p in webhook} == {"wrong or missing secret"}
    assert webhook[0]["first_at"] <= webhook[0]["last_at"] < webhook[1]["first_at"]
    [admin] = [r.payload for r in rows if r.payload["source"] == "telegram:admin_command"]
    assert admin["count"] == 1
