"""How many sends a crash leaves `unknown`: SIGKILL a real `crmbot run` mid-delivery, count.

Starts the fake Telegram Bot API (tests/support) on 127.0.0.1 with a seeded latency on every
sendMessage (it acts on the request first and answers after the delay, as Telegram does), and
queues N replies to C customers in the outbox: all at once, or at --rate per second. A real
`crmbot run` process delivers them through its OutboxWorker; it is SIGKILLed at K seeded
random moments (each when a seeded share of the sends has reached the server, plus a jitter)
and started again each time. Once every item is sent, failed or unknown, the figures are
counted at the fake server and in the outbox:

- requested, and delivered: items the server acted on at least once;
- duplicated: items the server acted on more than once (the outbox must never do this);
- lost: items that never reached the server, by their outbox status;
- unknown: items whose outcome the outbox cannot know and leaves to a person, split into
  those the server did act on and those it never saw; and unknown per 1,000 sends.

Nothing leaves 127.0.0.1; the run is bounded by --time-limit and stops by itself. Usage:

    python -m bench.crash_outbox [--sends 1000] [--kills 8] [--seed N] [--chats 100]
        [--rate 0] [--latency-ms 20-150] [--lease-seconds 5] [--time-limit 900]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from bench.bot_process import (
    BotProcess,
    add_latency,
    clean_environment,
    loopback_only,
    parse_latency,
)
from bot.store import outbox
from bot.store.db import Database
from bot.store.models import Contact, Conversation, OutboxItem
from tests.support.fake_telegram import FakeTelegram

STAFF_CHAT = -1001234567890
FIRST_CHAT = 20_000
KEY = re.compile(r"^bench (\d+):")


@dataclass
class Run:
    """One benchmark run's configuration and what it saw."""

    sends: int
    kills: int
    seed: int
    chats: int
    rate: float
    latency: tuple[float, float]
    lease_seconds: float
    database_url: str
    workdir: Path
    rng: random.Random = field(init=False)
    settled: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


# --- the outbox ---------------------------------------------------------------------------------


async def create_chats(db: Database, count: int) -> list[tuple[int, int]]:
    """One contact and conversation per customer chat: (conversation id, contact id) each."""
    async with db.transaction() as session:
        conversations = []
        for n in range(count):
            contact = Contact(name=f"Customer {n}", telegram_user_id=FIRST_CHAT + n)
            session.add(contact)
            await session.flush()
            conversation = Conversation(contact_id=contact.id, channel="telegram")
            session.add(conversation)
            conversations.append(conversation)
        await session.flush()
        return [(c.id, c.contact_id) for c in conversations]


async def queue(db: Database, chats: list[tuple[int, int]], numbers: range) -> None:
    async with db.transaction() as session:
        for n in numbers:
            chat = n % len(chats)
            conversation_id, contact_id = chats[chat]
            await outbox.enqueue(
                session,
                key=f"bench:{n}",
                conversation_id=conversation_id,
                contact_id=contact_id,
                channel="telegram",
                recipient=str(FIRST_CHAT + chat),
                text=f"bench {n}: thanks, we will be in touch",
            )


async def feed(db: Database, run: Run, chats: list[tuple[int, int]]) -> None:
    """Queue the sends: all at once, or `rate` a second in batches of a tenth of a second."""
    if run.rate <= 0:
        await queue(db, chats, range(run.sends))
        return
    batch = max(1, round(run.rate / 10))
    for first in range(0, run.sends, batch):
        await queue(db, chats, range(first, min(first + batch, run.sends)))
        await asyncio.sleep(batch / run.rate)


async def statuses(db: Database) -> dict[int, str]:
    query = select(OutboxItem.idempotency_key, OutboxItem.status).where(
        OutboxItem.idempotency_key.like("bench:%")
    )
    async with db.transaction() as session:
        rows = (await session.execute(query)).all()
    return {int(key.split(":", 1)[1]): status for key, status in rows}


async def settled(db: Database, run: Run) -> bool:
    found = await statuses(db)
    return len(found) == run.sends and not {"pending", "sending"} & set(found.values())


# --- the server ---------------------------------------------------------------------------------


def delivered(fake: FakeTelegram) -> Counter[int]:
    """How many times the server acted on each bench item."""
    found: Counter[int] = Counter()
    for params in fake.sent():
        match = KEY.match(str(params.get("text", "")))
        if match:
            found[int(match.group(1))] += 1
    return found


# --- the process --------------------------------------------------------------------------------


def environment(fake: FakeTelegram, run: Run) -> dict[str, str]:
    """The developer's environment minus every key and channel setting, plus ours."""
    return clean_environment() | {
        "DATABASE_URL": run.database_url,
        "LLM_PROVIDER": "offline",
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_BASE_URL": fake.base_url,
        "TELEGRAM_STAFF_CHAT_ID": str(STAFF_CHAT),
        "LEASE_SECONDS": str(run.lease_seconds),
        "LOG_LEVEL": "WARNING",
    }


async def server_reaches(
    fake: FakeTelegram, count: int, db: Database, bot: BotProcess, run: Run
) -> bool:
    """Wait until the server has acted on `count` bench items; False if the outbox settled
    first (items left unknown never reach it, so a later kill moment may never come)."""
    polls = 0
    while len(delivered(fake)) < count:
        bot.check_running()
        polls += 1
        if polls % 25 == 0 and await settled(db, run):
            return False
        await asyncio.sleep(0.02)
    return True


async def crash_and_restart(fake: FakeTelegram, db: Database, bot: BotProcess, run: Run) -> None:
    """Kill the bot when each seeded share of the sends has reached the server; restart it."""
    thresholds = sorted(run.rng.sample(range(1, run.sends), run.kills))
    await bot.start()
    try:
        for threshold in thresholds:
            if not await server_reaches(fake, threshold, db, bot, run):
                break
            await asyncio.sleep(run.rng.uniform(0, 0.3))
            await bot.kill_and_restart()
        while not run.settled:
            run.settled = await settled(db, run)  # polled: the state is in another process
            await asyncio.sleep(0.5)
    finally:
        await bot.stop()


# --- the figures --------------------------------------------------------------------------------


def report(run: Run, bot: BotProcess, at_server: Counter[int], found: dict[int, str]) -> None:
    never = [n for n in range(run.sends) if at_server[n] == 0]
    unknown = [n for n, status in found.items() if status == "unknown"]
    lost_by = Counter(found.get(n, "never queued") for n in never)
    print(
        f"seed {run.seed}: {run.sends} sends to {run.chats} chats, {bot.kills} kills "
        f"({bot.starts} starts), queued {'all at once' if run.rate <= 0 else f'{run.rate:g}/s'},"
        f" latency {run.latency[0] * 1000:.0f}-{run.latency[1] * 1000:.0f} ms, "
        f"LEASE_SECONDS={run.lease_seconds:g}, {run.database_url.split(':', 1)[0]}"
    )
    if not run.settled:
        print("NOT SETTLED within the time limit: the figures below are a snapshot")
    print(f"sends requested: {run.sends}")
    print(f"delivered (at the server): {sum(1 for n in at_server if n < run.sends)}")
    print(f"duplicated (an item delivered twice or more): {sum(c > 1 for c in at_server.values())}")
    print(f"lost (never delivered): {len(never)} {dict(lost_by) if never else ''}".rstrip())
    reached = sum(at_server[n] > 0 for n in unknown)
    print(
        f"unknown: {len(unknown)} (reached the server: {reached}, "
        f"never reached it: {len(unknown) - reached})"
    )
    print(f"unknown per 1,000 sends: {len(unknown) * 1000 / run.sends:.1f}")


async def main(run: Run, time_limit: float) -> int:
    logging.disable(logging.CRITICAL)  # the fake's and SQLAlchemy's chatter; figures only
    db = Database(run.database_url)
    try:
        await db.migrate()
        chats = await create_chats(db, run.chats)
        async with FakeTelegram() as fake:
            fake.add_supergroup(STAFF_CHAT, "Staff")
            add_latency(fake, run.rng, run.latency, run.sends * 3 + 1000)  # and retries, alerts
            bot = BotProcess(environment(fake, run), run.workdir)
            started = time.monotonic()
            feeder = asyncio.create_task(feed(db, run, chats))
            try:
                await asyncio.wait_for(crash_and_restart(fake, db, bot, run), time_limit)
            except TimeoutError:
                pass  # reported as not settled
            finally:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            report(run, bot, delivered(fake), await statuses(db))
            print(f"took {time.monotonic() - started:.0f} s")
    finally:
        await db.dispose()
    return 0 if run.settled else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0, help="sends queued a second; 0: all")
    parser.add_argument("--latency-ms", default="20-150", help="sendMessage answer delay range")
    parser.add_argument("--lease-seconds", type=float, default=5)
    parser.add_argument("--time-limit", type=float, default=900)
    parser.add_argument(
        "--database-url", default=None, help="an empty database; default: SQLite in a temp dir"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-outbox-") as tmp:
        bench = Run(
            sends=args.sends,
            kills=min(args.kills, max(args.sends - 1, 0)),
            seed=args.seed if args.seed is not None else random.SystemRandom().randrange(10**6),
            chats=args.chats,
            rate=args.rate,
            latency=parse_latency(args.latency_ms),
            lease_seconds=args.lease_seconds,
            database_url=loopback_only(
                args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'crash.db'}"
            ),
            workdir=Path(tmp),
        )
        sys.exit(asyncio.run(main(bench, args.time_limit)))
