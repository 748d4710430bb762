"""Staff-side latency when many conversations are handed off at once.

The staff group takes 20 posts a minute, shared by every topic in it. N conversations are
handed off at the same moment (each queues its summary for staff), and then each customer
writes K more lines at random moments over the next W seconds; while a conversation is with
staff, each line is copied to its topic. Measured at a fake Bot API that answers 429 past 20
posts a minute to the group (bench.sending's `LimitedTelegram`), through crmbot's real path:
the store, the dispatcher and runner passing lines to staff, the staff desk, the outbox
worker and the Telegram staff channel with its pacing.

Two cases in one run:

1. crmbot: summaries go before other conversations' waiting posts, and a customer's lines
   join their copy that still waits once posts are backed up (`BACKED_UP_SECONDS`);
2. one post a line: the same, with both switched off (the order of queueing, a post per
   line), for comparison.

Reported: how long staff waited for each summary after its handoff and for each line after
the customer wrote it (p50/p95/max), how many posts the group took, and the 429s.

Time runs `--speed` times faster than real time (default 10): the group's window is 6 s
instead of 60 at the fake and in crmbot's pacing alike (and crmbot's `BACKED_UP_SECONDS`
with it), and every figure is scaled back to real seconds. The database is a temporary
SQLite file, or with --database-url a scratch database on that PostgreSQL server, dropped
afterwards.

Usage:

    python -m bench.staff_wave [--quick] [--conversations 50] [--lines 3] [--window 120]
        [--speed 10] [--seed 1] [--json PATH] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import select

from bench import sending
from bench.results_io import Collector, Record, write_results
from bench.sending import STAFF_CHAT, Limit, LimitedTelegram, SlidingWindow, crmbot_settings
from bot.app.wiring import App, serve
from bot.desk import staff as staff_desk
from bot.desk.handoff import hand_off
from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, mark_handled, record_inbound_batch
from bot.store.models import OutboxItem
from channels.telegram import pacing
from channels.telegram.outbound import StaffChannel
from channels.telegram.service import TelegramService
from tests.support.fake_telegram_methods import as_int

MARK = re.compile(r"wave-(\d+)-(\d+)")
SUMMARY = re.compile(r"summary-of-wave-(\d+)")


class WaveTelegram(LimitedTelegram):
    """The group's 20 posts a minute, with the minute `speed` times shorter."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self.group = Limit("group 20/min", 20, 60.0 / speed)

    def _chat_window(self, chat_id: int) -> SlidingWindow:
        if chat_id < 0 and chat_id not in self.per_chat:
            self.per_chat[chat_id] = SlidingWindow(self.group)
        return super()._chat_window(chat_id)


@dataclasses.dataclass(frozen=True)
class Wave:
    conversations: int
    lines: int
    window: float
    """Real seconds over which the customers' lines arrive after the handoffs."""
    speed: float
    seed: int


@dataclasses.dataclass
class Figures:
    case: str
    summary_waits: list[float]
    line_waits: list[float]
    posts: int
    refused: int
    lines_copied: int
    lines_written: int

    def quantiles(self, values: list[float]) -> str:
        if not values:
            return "none"
        q = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
        return f"p50 {statistics.median(values):.0f} s, p95 {q[-1]:.0f} s, max {max(values):.0f} s"


@contextlib.contextmanager
def switched(coalescing: bool, speed: float) -> Iterator[None]:
    """crmbot as shipped (its time scaled like the rest), or with summaries first and joined
    copies switched off."""
    saved = (staff_desk.BACKED_UP_SECONDS, StaffChannel.first_kinds)
    staff_desk.BACKED_UP_SECONDS /= speed
    if not coalescing:
        staff_desk.BACKED_UP_SECONDS = 10.0**9  # never backed up: no copy joins another
        StaffChannel.first_kinds = ()
    try:
        yield
    finally:
        staff_desk.BACKED_UP_SECONDS, StaffChannel.first_kinds = saved


async def run_case(wave: Wave, case: str, coalescing: bool, url: str) -> Figures:
    fake = WaveTelegram(wave.speed)
    saved_window = pacing.GROUP_WINDOW_SECONDS
    pacing.GROUP_WINDOW_SECONDS = 60.0 / wave.speed
    try:
        async with fake:
            fake.add_supergroup(STAFF_CHAT, "Staff")
            with switched(coalescing, wave.speed):
                return await _measure(fake, wave, case, url)
    finally:
        pacing.GROUP_WINDOW_SECONDS = saved_window


async def _measure(fake: WaveTelegram, wave: Wave, case: str, url: str) -> Figures:
    settings = crmbot_settings(fake, url)
    settings = settings.model_copy(update={"coalesce_seconds": 0})
    app = App(settings, seed_agents=False, quiet_seconds=0)
    service = TelegramService(app, settings)
    await app.start()
    prefix = uuid.uuid4().hex[:8]
    first_chat = 10**9 + random.Random(prefix).randrange(10**8)
    conversations = await _open(app, wave, prefix, first_chat)
    await service.start()
    fake.calls.clear()
    serving = asyncio.create_task(serve(app, []))
    try:
        handed_off = await _hand_off_all(app, conversations)
        written = await _write_lines(app, wave, prefix, first_chat)
        await _settled(app, deadline=time.monotonic() + 600)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await app.aclose()
        await service.stop()
    return _figures(case, fake, wave, handed_off, written)


async def _open(app: App, wave: Wave, prefix: str, first_chat: int) -> list[int]:
    """Each customer's conversation, opened by a first message the bot already answered."""
    inbounds = [
        InboundMessage(
            Identity("telegram", str(first_chat + n), name=f"summary-of-wave-{n}"),
            f"{prefix}-open-{n}",
            "hello",
        )
        for n in range(wave.conversations)
    ]
    async with app.db.transaction() as session:
        stored = await record_inbound_batch(session, inbounds)
        await mark_handled(session, [s.message_id for s in stored], None)
    return [s.conversation_id for s in stored]


async def _hand_off_all(app: App, conversations: list[int]) -> float:
    """Every conversation handed off at once, each in a transaction of its own, as runs do."""
    started = time.monotonic()
    for conversation_id in conversations:
        async with app.db.transaction() as session:
            await hand_off(
                session,
                app.audit,
                conversation_id=conversation_id,
                reason="the customer asked for a person",
                summary="Wants a person about their account.",
                actor="bench",
                tell_customer=False,
            )
    app.wake_outbox()
    return started


async def _write_lines(app: App, wave: Wave, prefix: str, first_chat: int) -> dict[str, float]:
    """The customers' lines at their moments; when each was recorded, by its mark."""
    rng = random.Random(wave.seed)
    moments = sorted(
        (rng.uniform(0, wave.window / wave.speed), n, k)
        for n in range(wave.conversations)
        for k in range(wave.lines)
    )
    start, written = time.monotonic(), {}
    for at, n, k in moments:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        mark = f"wave-{n}-{k}"
        inbound = InboundMessage(
            Identity("telegram", str(first_chat + n)), f"{prefix}-{mark}", f"{mark}: anyone?"
        )
        async with app.db.transaction() as session:
            [stored] = await record_inbound_batch(session, [inbound])
            await app.take_turns(session, [stored.conversation_id])
        written[mark] = time.monotonic()
        app.dispatcher.notify(stored.conversation_id)
    return written


async def _settled(app: App, deadline: float) -> None:
    while time.monotonic() < deadline:
        await app.dispatcher.idle()
        async with app.db.reading() as session:
            waiting = await session.scalar(
                select(OutboxItem.id).where(OutboxItem.status.in_(("pending", "sending"))).limit(1)
            )
        if waiting is None:
            return
        await asyncio.sleep(0.1)


def _figures(
    case: str, fake: WaveTelegram, wave: Wave, handed_off: float, written: dict[str, float]
) -> Figures:
    posts = [
        call
        for call in fake.calls
        if call.method.lower() in sending.SEND_METHODS
        and call.status == 200
        and as_int(call.params.get("chat_id")) == STAFF_CHAT
    ]
    summary_waits: list[float] = []
    line_arrivals: dict[str, float] = {}
    for call in posts:
        text = str(call.params.get("text", ""))
        if SUMMARY.search(text):
            summary_waits.append((call.at - handed_off) * wave.speed)
        for n, k in MARK.findall(text):
            line_arrivals.setdefault(f"wave-{n}-{k}", call.at)
    line_waits = [
        (line_arrivals[mark] - at) * wave.speed
        for mark, at in written.items()
        if mark in line_arrivals
    ]
    refused = sum(1 for r in fake.rejections if r.chat_id == STAFF_CHAT)
    return Figures(
        case, summary_waits, line_waits, len(posts), refused, len(line_arrivals), len(written)
    )


def show(figures: Figures) -> None:
    print(
        f"{figures.case}: {figures.posts} staff posts, {figures.refused} answered 429; "
        f"{figures.lines_copied}/{figures.lines_written} lines reached staff"
    )
    print(f"  summary, after its handoff: {figures.quantiles(figures.summary_waits)}")
    print(f"  customer line, after it was written: {figures.quantiles(figures.line_waits)}")


def records(figures: Figures, wave: Wave, backend: str) -> list[Record]:
    case = f"{figures.case}, {wave.conversations} handoffs at once"
    out = Collector("staff_wave", backend)
    for name, values in (("summary", figures.summary_waits), ("line", figures.line_waits)):
        if len(values) > 1:
            out.add(case, f"{name}_p50_s", statistics.median(values), "s", None)
            out.add(case, f"{name}_p95_s", statistics.quantiles(values, n=20)[-1], "s", None)
            out.add(case, f"{name}_max_s", max(values), "s", None)
    out.add(case, "staff_posts", figures.posts, "posts", None)
    out.add(case, "answered_429", figures.refused, "", "== 0")
    return out.records


async def main(wave: Wave, json_path: str | None, database_url: str | None) -> None:
    logging.disable(logging.WARNING)
    print(
        f"{wave.conversations} conversations handed off at once, then {wave.lines} lines from "
        f"each customer over {wave.window:.0f} s; the staff group takes 20 posts a minute "
        f"(time runs {wave.speed:g}x faster; figures in real seconds)"
    )
    found: list[Record] = []
    for case, coalescing in (("crmbot", True), ("one post a line", False)):
        async with _database(database_url) as url:
            figures = await run_case(wave, case, coalescing, url)
        show(figures)
        found += records(figures, wave, "sqlite" if url.startswith("sqlite") else "postgresql")
    write_results(json_path, found)


@contextlib.asynccontextmanager
async def _database(url: str | None) -> AsyncIterator[str]:
    """A temporary SQLite file, or a scratch database on the PostgreSQL server of `url`."""
    if url is not None:
        async with sending.scratch_database(url) as scratch:
            yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="staff-wave-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'wave.db'}"


def parse() -> tuple[Wave, str | None, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 conversations")
    parser.add_argument("--conversations", type=int, default=None, help="default 50")
    parser.add_argument("--lines", type=int, default=3, help="lines from each customer")
    parser.add_argument("--window", type=float, default=120, help="real seconds of lines")
    parser.add_argument("--speed", type=float, default=10, help="time runs this much faster")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="write result records here")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    wave = Wave(
        conversations=args.conversations or (20 if args.quick else 50),
        lines=args.lines,
        window=args.window,
        speed=args.speed,
        seed=args.seed,
    )
    return wave, args.json, args.database_url


if __name__ == "__main__":
    chosen, json_file, database = parse()
    asyncio.run(main(chosen, json_file, database))
