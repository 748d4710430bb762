"""Telegram throughput against the local fake Bot API (no network), printed as figures.

1. The floor: a bare python-telegram-bot echo bot (Updater polling, one reply per update) with
   updates handled one at a time, with concurrent_updates(16) and concurrent_updates(True).
2. crmbot's intake: updates fetched by our poller and stored exactly once (cursor, dedupe),
   with nothing answering them, so that agent runs do not compete for the CPU.
3. crmbot end to end: intake, per-conversation dispatch, an echo model through the full engine
   (routing, guardrails, loop, audit), the outbox and paced delivery.

Usage: python -m bench.telegram [--updates 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from agents import catalog
from agents.definition import TEMPLATES_DIR
from bot.store.models import Message
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig

FIRST_USER = 10_000


def queue_updates(fake: FakeTelegram, count: int) -> None:
    for n in range(count):
        fake.user_message(FIRST_USER + n, f"hello {n}", first_name=f"P{n}")


async def wait_for(check: object, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.01)


async def echo_floor(count: int, concurrency: int | bool) -> float:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(update.effective_message.text or "")

    async with FakeTelegram() as fake:
        queue_updates(fake, count)
        app = (
            Application.builder()
            .token(fake.token)
            .base_url(fake.base_url)
            .concurrent_updates(concurrency)
            .build()
        )
        app.add_handler(MessageHandler(filters.TEXT, echo))
        async with app:
            assert app.updater is not None
            started = time.perf_counter()
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
            await wait_for(lambda: len(fake.calls_of("sendMessage")) >= count)
            elapsed = time.perf_counter() - started
            await app.updater.stop()
            await app.stop()
    return count / elapsed


async def crmbot_path(count: int, url: str, *, answer: bool) -> float:
    async with FakeTelegram() as fake:
        fake.add_supergroup(STAFF_CHAT, "Staff")
        rig = TelegramRig(fake, url, coalesce_seconds=0)
        await rig.start(FunctionModel(lambda request: turn("thanks, noted")), import_agents=False)
        assert rig.app is not None
        async with rig.app.db.transaction() as session:
            await catalog.import_paths(session, [TEMPLATES_DIR])
        if not answer:
            _stop_answering(rig)
        started = time.perf_counter()
        queue_updates(fake, count)
        if answer:
            await wait_for(lambda: len(fake.calls_of("sendMessage")) >= count)
        else:
            await _wait_stored(rig, count)
        elapsed = time.perf_counter() - started
        await rig.stop()
    return count / elapsed


def _stop_answering(rig: TelegramRig) -> None:
    """Record messages without starting runs, so the intake figure measures storing alone.

    The intake holds the dispatcher's bound `notify` from start-up and the sweep calls
    `self.notify`, so both are replaced.
    """
    assert rig.app is not None and rig.service is not None

    def ignore(conversation_id: int) -> None:
        del conversation_id

    rig.service.intake.notify = ignore
    rig.app.dispatcher.notify = ignore  # type: ignore[method-assign]


async def _stored(rig: TelegramRig) -> int:
    """Inbound messages stored so far (a count: loading the rows would slow the intake)."""
    assert rig.app is not None
    async with rig.app.db.transaction() as session:
        query = select(func.count()).select_from(Message).where(Message.direction == "in")
        return int(await session.scalar(query) or 0)


async def _wait_stored(rig: TelegramRig, count: int, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while await _stored(rig) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.05)


async def main(count: int, url: str | None) -> None:
    logging.disable(logging.WARNING)
    for label, concurrency in (
        ("one at a time", False),
        ("concurrent_updates(16)", 16),
        ("concurrent_updates(True)", True),
    ):
        rate = await echo_floor(count, concurrency)
        print(f"floor, PTB echo bot, {label}: {rate:,.0f} updates/s")
    with tempfile.TemporaryDirectory() as tmp:
        for answer, label in (
            (False, "intake (stored exactly once)"),
            (True, "end to end (engine, audit, outbox, paced send)"),
        ):
            db = url or f"sqlite+aiosqlite:///{Path(tmp) / f'bench-{answer}.db'}"
            rate = await crmbot_path(count if not answer else min(count, 300), db, answer=answer)
            print(f"crmbot {label}, {db.split(':', 1)[0]}: {rate:,.0f} messages/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.updates, args.database_url))
