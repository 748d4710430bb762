"""Scale of data: the hygiene scan, lookups at a million messages, and memory per contact.

Loads a scratch database, made by the project's own migrations, with Core `insert()`
executemany in chunks (100,000 deals over 20,000 contacts; 1,000,000 messages over 10,000
conversations; `--quick`: a fifth of that), then measures:

- the pipeline-hygiene scan (`bot.store.hygiene`): every stale deal, and every contact who
  needs a follow-up, walked a page at a time (median of three walks);
- p50/p99 of 500 random lookups each: the contact behind a channel identity (what intake
  runs for every message), the history a run reads (`run_history`, what the model sees), and
  the contact's open deal (what routing and the prompt read on every run);
- the same again with each index the scans could use, created ad hoc in the scratch database
  only (labelled "ad hoc" in the output; no migration creates them);
- peak RSS of a process that drives 10,000 contacts (`--quick`: 2,000), one message each,
  through the whole path (intake, dispatcher, runner with an instant model, outbox, a
  channel), in a subprocess of its own so the peak is this case's; with RSS at 10%, 50% and
  100% of the contacts to show whether memory grows with them (`--tracemalloc` shows what
  grew between the first and the last checkpoint).

Usage:

    python -m bench.data_scale [--database-url URL] [--json PATH] [--quick]
                               [--skip-rss | --rss-contacts N] [--tracemalloc]

On PostgreSQL the data goes into a scratch database created beside the one URL names (and
dropped afterwards), and tables are ANALYZEd after loading, as autovacuum would do; SQLite
gets no ANALYZE, as the app never runs one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import random
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.concurrency import (
    CountingChannel,
    PacedModel,
    backend_of,
    bench_settings,
    record_messages,
    running_app,
    scratch_database,
)
from bench.results_io import Collector, Record, write_results
from bot.store.contacts import find_by_identity
from bot.store.db import Database
from bot.store.deals import open_deal
from bot.store.hygiene import StalePolicy, follow_ups, stale_deals
from bot.store.inbox import recent_messages, run_history
from bot.store.models import ChannelIdentity, Contact, Conversation, Deal, Message
from bot.store.types import utcnow

BENCHMARK = "data_scale"
SCAN_TARGET, LOOKUP_TARGET, RSS_TARGET = "< 2000", "< 5", "< 300"
CHUNK = 5_000
POLICY = StalePolicy(default_days=14, days_by_stage={"negotiation": 7, "new": 30})
STAGES = {
    "new": 20,
    "qualified": 20,
    "meeting_booked": 10,
    "proposal": 10,
    "negotiation": 10,
    "won": 15,
    "lost": 15,
}
OWNERS = [f"rep{n}@example.com" for n in range(12)]
TEXTS = [
    "Hi, I saw your pricing page and wanted to ask about the team plan.",
    "Thanks! We are about 25 people, mostly in sales and support.",
    "Could we do a call next Tuesday afternoon? Any time after 2pm works for me.",
    "Sure, here is what we need: shared inbox, pipeline stages and a weekly report.",
    "Got it. I have noted your answers and a colleague will follow up with details.",
    "ok",
]
SAMPLES_PER_LOOKUP = 500


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much data to load and how many contacts the RSS case drives."""

    deals: int
    contacts: int
    """Contacts holding the deals; the first `conversations` of them also have a chat."""
    conversations: int
    messages: int
    rss_contacts: int

    def __str__(self) -> str:
        return (
            f"{self.deals} deals over {self.contacts} contacts, {self.messages} messages over "
            f"{self.conversations} conversations; RSS with {self.rss_contacts} contacts"
        )


FULL = Sizes(100_000, 20_000, 10_000, 1_000_000, rss_contacts=10_000)
QUICK = Sizes(20_000, 4_000, 2_000, 200_000, rss_contacts=2_000)


def telegram_address(contact_id: int) -> str:
    return str(7_000_000_000 + contact_id)


# Loading ---------------------------------------------------------------------------------------


def contact_rows(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    for cid in range(1, count + 1):
        yield {
            "id": cid,
            "name": f"Contact {cid}",
            "email": f"contact{cid}@example.com",
            "phone": None,
            "telegram_user_id": 7_000_000_000 + cid,
            "telegram_username": f"user{cid}",
            "tags": ["lead"] if cid % 3 else [],
            "lead_score": cid % 100,
            "owner": OWNERS[cid % len(OWNERS)],
            "custom_fields": {},
            "lead_source": "telegram",
            "assigned_agent": None,
            "unreachable": cid % 100 == 0,
            "created_at": now - timedelta(days=200),
            "updated_at": now - timedelta(days=1),
        }


def identity_rows(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    for cid in range(1, count + 1):
        yield {
            "id": cid,
            "contact_id": cid,
            "channel": "telegram",
            "address": telegram_address(cid),
            "created_at": now - timedelta(days=200),
        }


def deal_rows(sizes: Sizes, now: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    stages, weights = list(STAGES), list(STAGES.values())
    for did in range(1, sizes.deals + 1):
        # Most deals saw activity lately; a long tail did not (mean 10 days).
        idle = min(rng.expovariate(1 / 10), 365.0)
        yield {
            "id": did,
            "contact_id": rng.randint(1, sizes.contacts),
            "title": f"Deal {did}",
            "stage": rng.choices(stages, weights)[0],
            "value": Decimal(rng.randint(100, 50_000)),
            "currency": "USD",
            "owner": OWNERS[did % len(OWNERS)],
            "last_activity_at": now - timedelta(days=idle),
            "created_at": now - timedelta(days=idle + rng.uniform(0, 60)),
        }


def conversation_rows(count: int, now: datetime) -> Iterator[dict[str, Any]]:
    for cid in range(1, count + 1):
        yield {
            "id": cid,
            "contact_id": cid,
            "channel": "telegram",
            "state": "bot",
            "current_agent": "lead-qualifying",
            "subject": None,
            "last_message_at": now,
            "created_at": now - timedelta(days=30),
            "updated_at": now,
        }


def message_rows(
    sizes: Sizes, now: datetime, rng: random.Random, last_inbound: dict[int, int]
) -> Iterator[dict[str, Any]]:
    """Messages in time order, the conversations' turns interleaved as they happen.

    Fills `last_inbound` with each conversation's newest inbound message id (a run's
    watermark)."""
    start, step = now - timedelta(days=30), timedelta(days=30) / max(sizes.messages, 1)
    order = list(range(1, sizes.conversations + 1))
    mid = 0
    for round_ in range(math.ceil(sizes.messages / sizes.conversations)):
        rng.shuffle(order)
        for conversation in order:
            mid += 1
            if mid > sizes.messages:
                return
            inbound = round_ % 2 == 0
            created = start + step * mid
            if inbound:
                last_inbound[conversation] = mid
            yield {
                "id": mid,
                "conversation_id": conversation,
                "contact_id": conversation,
                "direction": "in" if inbound else "out",
                "author": "contact" if inbound else "agent",
                "channel": "telegram",
                "external_id": f"{telegram_address(conversation)}:{mid}" if inbound else None,
                "text": rng.choice(TEXTS),
                "attachments": [],
                "meta": {},
                "sent_at": created if inbound else None,
                "created_at": created,
                "handled_at": created if inbound else None,
                "run_id": None,
            }


async def insert_chunked(db: Database, table: Table, rows: Iterator[dict[str, Any]]) -> float:
    """Insert `rows` with executemany, CHUNK rows per statement; returns rows per second."""
    started, count = time.perf_counter(), 0
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            break
        async with db.engine.begin() as connection:
            await connection.execute(insert(table), chunk)
        count += len(chunk)
    return count / (time.perf_counter() - started)


async def load(db: Database, sizes: Sizes, backend: str) -> dict[int, int]:
    """Fill the database; returns each conversation's newest inbound message id."""
    now, rng = utcnow(), random.Random(7)
    last_inbound: dict[int, int] = {}
    loads: list[tuple[type[Any], Iterator[dict[str, Any]]]] = [
        (Contact, contact_rows(sizes.contacts, now)),
        (ChannelIdentity, identity_rows(sizes.contacts, now)),
        (Deal, deal_rows(sizes, now, rng)),
        (Conversation, conversation_rows(sizes.conversations, now)),
        (Message, message_rows(sizes, now, rng, last_inbound)),
    ]
    for model, rows in loads:
        rate = await insert_chunked(db, model.__table__, rows)
        print(f"  loaded {model.__tablename__} at {rate:,.0f} rows/s")
    if backend == "postgresql":
        async with db.engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    return last_inbound


# Measuring -------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


async def time_scan(
    db: Database, walk: Callable[[AsyncSession], Awaitable[int]]
) -> tuple[float, int]:
    """Median wall time of three walks, in ms, and how many rows a walk found."""
    times, found = [], 0
    for _ in range(3):
        async with db.transaction() as session:
            started = time.perf_counter()
            found = await walk(session)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), found


async def count_stale(session: AsyncSession) -> int:
    return sum([1 async for _ in stale_deals(session, POLICY)])


async def count_follow_ups(session: AsyncSession) -> int:
    return sum([1 async for _ in follow_ups(session, POLICY)])


async def time_lookups(
    db: Database, lookup: Callable[[AsyncSession, int], Awaitable[object]], keys: list[int]
) -> tuple[float, float]:
    """(p50, p99) in ms of `lookup(session, key)` for each key, one session, identity map
    emptied between calls so no lookup is answered from an earlier one's objects."""
    times = []
    async with db.transaction() as session:
        for key in keys:
            started = time.perf_counter()
            await lookup(session, key)
            times.append((time.perf_counter() - started) * 1000)
            session.expunge_all()
    return percentile(times, 0.5), percentile(times, 0.99)


@asynccontextmanager
async def adhoc_index(db: Database, name: str, table: str, columns: str) -> AsyncIterator[None]:
    """An index the migrations do not create, made in the scratch database for a comparison."""
    async with db.engine.begin() as connection:
        await connection.execute(text(f"CREATE INDEX {name} ON {table} ({columns})"))
        if db.engine.dialect.name == "postgresql":
            await connection.execute(text(f"ANALYZE {table}"))
    try:
        yield
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(text(f"DROP INDEX {name}"))


Run = Callable[[Database], Awaitable[tuple[float, str]]]


@dataclass(frozen=True, slots=True)
class Probe:
    """One figure to measure: `run` returns the value and a detail to print beside it."""

    name: str
    scale: str
    metric: str
    target: str | None
    run: Run


@dataclass(frozen=True, slots=True)
class AdhocIndex:
    """An index the migrations lack, and the probes it could speed up."""

    name: str
    table: str
    columns: str
    affects: tuple[str, ...]


ADHOC_INDEXES = [
    AdhocIndex("bench_adhoc_deals_contact", "deals", "contact_id", ("follow-ups", "open_deal")),
    AdhocIndex(
        "bench_adhoc_deals_contact_stage_activity",
        "deals",
        "contact_id, stage, last_activity_at",
        ("follow-ups", "open_deal"),
    ),
    AdhocIndex(
        "bench_adhoc_deals_stage_activity",
        "deals",
        "stage, last_activity_at",
        ("stale deals", "follow-ups"),
    ),
    AdhocIndex(
        "bench_adhoc_messages_conversation",
        "messages",
        "conversation_id, id",
        ("run_history", "recent_messages"),
    ),
]


def scan_probe(walk: Callable[[AsyncSession], Awaitable[int]]) -> Run:
    async def run(db: Database) -> tuple[float, str]:
        ms, found = await time_scan(db, walk)
        return ms, f"{found} found, median of 3 walks"

    return run


def lookup_probe(lookup: Callable[[AsyncSession, int], Awaitable[object]], keys: list[int]) -> Run:
    async def run(db: Database) -> tuple[float, str]:
        p50, p99 = await time_lookups(db, lookup, keys)
        return p99, f"p50 {p50:.2f} ms over {len(keys)} lookups"

    return run


def probes(sizes: Sizes, last_inbound: dict[int, int]) -> list[Probe]:
    rng = random.Random(11)
    contacts = [rng.randint(1, sizes.contacts) for _ in range(SAMPLES_PER_LOOKUP)]
    chats = [rng.randint(1, sizes.conversations) for _ in range(SAMPLES_PER_LOOKUP)]

    async def by_identity(session: AsyncSession, cid: int) -> object:
        return await find_by_identity(session, "telegram", telegram_address(cid))

    async def history(session: AsyncSession, conversation: int) -> object:
        return await run_history(session, conversation, [last_inbound[conversation]], 20)

    async def recent(session: AsyncSession, conversation: int) -> object:
        return await recent_messages(session, conversation, 20)

    deals, contacts_at, messages = (
        f"{sizes.deals} deals",
        f"{sizes.contacts} contacts",
        f"{sizes.messages} messages",
    )
    scan, lookup = "hygiene_scan_ms", LOOKUP_TARGET
    return [
        Probe("stale deals", deals, scan, SCAN_TARGET, scan_probe(count_stale)),
        Probe("follow-ups", deals, scan, SCAN_TARGET, scan_probe(count_follow_ups)),
        Probe(
            "find_by_identity",
            f"{contacts_at}, {messages}",
            "contact_lookup_p99_ms",
            lookup,
            lookup_probe(by_identity, contacts),
        ),
        Probe(
            "run_history", messages, "history_fetch_p99_ms", lookup, lookup_probe(history, chats)
        ),
        Probe(
            "recent_messages", messages, "history_fetch_p99_ms", lookup, lookup_probe(recent, chats)
        ),
        Probe("open_deal", deals, "open_deal_p99_ms", None, lookup_probe(open_deal, contacts)),
    ]


async def run_probes(db: Database, chosen: list[Probe], out: Collector, label: str = "") -> None:
    for probe in chosen:
        value, detail = await probe.run(db)
        out.add(f"{probe.name}, {probe.scale}{label}", probe.metric, value, "ms", probe.target)
        print(f"    ({detail})")


async def measure_data(url: str, sizes: Sizes, out: Collector) -> None:
    db = Database(url)
    try:
        await db.migrate()
        last_inbound = await load(db, sizes, out.backend)
        every = probes(sizes, last_inbound)
        print("  with the migrations' indexes only:")
        await run_probes(db, every, out)
        for index in ADHOC_INDEXES:
            print(f"  with an ad hoc index on {index.table} ({index.columns}), in no migration:")
            async with adhoc_index(db, index.name, index.table, index.columns):
                chosen = [p for p in every if p.name in index.affects]
                label = f" + ad hoc index {index.table}({index.columns})"
                await run_probes(db, chosen, out, label)
    finally:
        await db.dispose()


# Memory ----------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS; ru_maxrss is KiB on Linux and bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def drive_contacts(url: str, contacts: int, trace: bool) -> dict[str, Any]:
    """Answer one message from each of `contacts` new contacts, in waves as traffic comes
    over a day; peak RSS at 10%, 50% and 100% of them."""
    checkpoints = sorted({max(1, contacts // 10), max(1, contacts // 2), contacts})
    wave = max(1, min(250, checkpoints[0]))
    channel = CountingChannel()
    prefix = uuid.uuid4().hex[:8]
    rss: list[tuple[int, float]] = []
    first: tracemalloc.Snapshot | None = None
    top: list[str] = []
    async with running_app(bench_settings(url), PacedModel(0.0), channel) as app:
        done = 0
        while done < contacts:
            size = min(wave, contacts - done, next(c for c in checkpoints if c > done) - done)
            names = [f"rss-{prefix}-{n}" for n in range(done, done + size)]
            for conversation_id in await record_messages(app, names, f"{prefix}-{done}"):
                app.dispatcher.notify(conversation_id)
            done += size
            await channel.wait_for(done)
            if done in checkpoints:
                rss.append((done, peak_rss_mb()))
                if trace and first is None:
                    tracemalloc.start()  # one frame: the line that allocated is enough
                    first = tracemalloc.take_snapshot()
        if first is not None:
            stats = tracemalloc.take_snapshot().compare_to(first, "lineno")
            top = [str(stat) for stat in stats[:10]]
    return {"checkpoints": rss, "peak_mb": peak_rss_mb(), "top": top}


async def measure_rss(database_url: str | None, sizes: Sizes, trace: bool, out: Collector) -> None:
    """Run `drive_contacts` in a child process on a fresh scratch database."""
    async with scratch_database(database_url) as url:
        command = [sys.executable, "-m", "bench.data_scale", "--rss-child", str(sizes.rss_contacts)]
        command += ["--database-url", url] + (["--tracemalloc"] if trace else [])
        started = time.perf_counter()
        child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        stdout, _ = await child.communicate()
    if child.returncode != 0:
        print(f"  the RSS child failed with exit code {child.returncode}")
        return
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    elapsed = time.perf_counter() - started
    print(f"  {sizes.rss_contacts} contacts through the whole path in {elapsed:.0f}s:")
    for done, mb in result["checkpoints"]:
        target = RSS_TARGET if done == sizes.rss_contacts else None
        out.add(f"after {done} contacts", "peak_rss_mb", mb, "MB", target)
    for line in result["top"]:
        print(f"    grew: {line}")


async def main(args: argparse.Namespace) -> list[Record]:
    sizes = QUICK if args.quick else FULL
    if args.rss_contacts is not None:
        sizes = dataclasses.replace(sizes, rss_contacts=args.rss_contacts)
    backend = backend_of(args.database_url) if args.database_url else "sqlite"
    out = Collector(BENCHMARK, backend)
    print(f"{backend}: {sizes}")
    async with scratch_database(args.database_url) as url:
        await measure_data(url, sizes, out)
    if not args.skip_rss:
        await measure_rss(args.database_url, sizes, args.tracemalloc, out)
    return out.records


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", default=None, help="write the records here")
    parser.add_argument("--quick", action="store_true", help="a fifth of the data, 2,000 contacts")
    parser.add_argument("--skip-rss", action="store_true", help="only the data-scale cases")
    parser.add_argument(
        "--rss-contacts", type=int, default=None, help="RSS case size (10000, quick 2000)"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="show what grew in the RSS case (slow)"
    )
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.rss_child is not None:
        child_result = asyncio.run(
            drive_contacts(arguments.database_url, arguments.rss_child, arguments.tracemalloc)
        )
        print(json.dumps(child_result))
    else:
        write_results(arguments.json, asyncio.run(main(arguments)))
