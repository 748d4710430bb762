"""One fleet run, start to finish: a scratch database, the fake Bot API, N workers, the
customers, an optional SIGKILL of one worker, then the tally.

The victim of the kill, once the seeded share of turns is over: in webhook mode a worker
picked with the seed, in polling mode the elected poller (the one the lease matters most
for). The leases it held are followed from the moment it died until other workers hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bench.concurrency import scratch_database
from bot.store.db import Database
from bot.store.models import Lease, OutboxItem
from tests.support.fake_telegram import FakeTelegram
from tests.support.fleet import STAFF_CHAT, Fleet, Mode, Worker, prepare
from tests.support.fleet_load import (
    Customer,
    PollingDelivery,
    Takeover,
    TakeoverWatch,
    Watcher,
    WebhookDelivery,
    drive,
    plan,
    store_view,
)
from tests.support.fleet_tally import Tally, tally

POLLER_LEASE = "telegram:poller"


@dataclass
class Case:
    """What to run."""

    mode: Mode
    workers: int
    messages: int
    conversations: int
    server_url: str
    """Any database on the PostgreSQL server; the run creates and drops one of its own."""
    kill: bool = False
    lease_seconds: float = 5.0
    seed: int = 1
    burst_share: float = 0.2
    scheduled: int = 5
    kill_after: float = 0.4
    """The share of turns over when the victim is killed."""
    time_limit: float = 1800.0
    patience: float = 300.0
    """How long a customer waits for an answer before writing again (the turn stalled)."""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def takeover_within(self) -> float:
        """How long the victim's leases are followed: a lapse and a sweep, with room."""
        return self.lease_seconds * 4 + 30

    @property
    def label(self) -> str:
        kill = ", one SIGKILL" if self.kill else ""
        return f"{self.mode}, {self.workers} worker{'s' * (self.workers > 1)}{kill}"


@dataclass
class Outcome:
    """What a run measured."""

    case: Case
    tally: Tally
    seconds: float
    """From the first message sent to the last turn over."""
    latencies: list[float]
    redelivered: int
    sent_by: dict[str, int]
    """Replies each worker delivered (outbox `claimed_by`)."""
    victim: Worker | None = None
    takeovers: list[Takeover] = field(default_factory=list)
    peak_connections: int = 0
    """The most connections the workers held to the database at once (sampled)."""
    log_lines: Counter[str] = field(default_factory=Counter)
    """Warnings and errors the workers logged, by their first words."""

    @property
    def throughput(self) -> float:
        return self.tally.sent / self.seconds if self.seconds else float("nan")

    def latency(self, share: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[round(share * 100) - 1]


async def run_case(case: Case, workdir: Path) -> Outcome:
    if make_url(case.server_url).get_backend_name() != "postgresql":
        raise ValueError("several workers need PostgreSQL: give a postgresql+asyncpg:// URL")
    async with scratch_database(case.server_url) as url, FakeTelegram() as fake:
        fake.add_supergroup(STAFF_CHAT, "Staff")
        fleet = Fleet(fake, url, workdir, case.mode, case.lease_seconds, dict(case.extra_env))
        await prepare(fleet, case.scheduled)
        db = Database(url)
        try:
            return await _run(case, fleet, fake, db)
        finally:
            await fleet.stop()
            await db.dispose()


async def _run(case: Case, fleet: Fleet, fake: FakeTelegram, db: Database) -> Outcome:
    await _warm(db)
    await fleet.start(case.workers)
    watcher = Watcher(db, fake)
    await watcher.tick()
    customers = plan(case.messages, case.conversations, case.burst_share, case.seed)
    delivery = WebhookDelivery(fake, fleet) if case.mode == "webhook" else PollingDelivery()
    watching = asyncio.create_task(watcher.run_forever(), name="watcher")
    connections = _Peak()
    sampling = asyncio.create_task(connections.sample(db), name="connections")
    killing = asyncio.create_task(_kill_mid_run(case, fleet, db, customers)) if case.kill else None
    try:
        async with delivery:
            started = time.monotonic()
            load = asyncio.gather(
                *(drive(c, watcher, delivery, fake, case.patience) for c in customers)
            )
            try:
                await asyncio.wait_for(_watching(fleet, load), case.time_limit)
            finally:
                load.cancel()
            seconds = time.monotonic() - started
        victim, watch = await killing if killing is not None else (None, None)
        await _settle(db, case)
    finally:
        for task in (watching, sampling, killing):
            if task is not None:
                task.cancel()
        await asyncio.gather(watching, sampling, return_exceptions=True)
    outcome = Outcome(
        case,
        await tally(db, fake, customers, case.scheduled),
        seconds,
        [t.done_at - t.sent_at for c in customers for t in c.turns if t.done_at is not None],
        delivery.redelivered,
        await _sent_by(db),
        victim,
    )
    if watch is not None:
        outcome.takeovers = sorted(watch.leases.values(), key=lambda t: t.name)
    outcome.peak_connections = connections.peak
    outcome.log_lines = logged(fleet)
    return outcome


class _Peak:
    """The most sessions the workers had open on the run's database, sampled twice a second
    (every session on it, less the harness's own pool)."""

    def __init__(self) -> None:
        self.peak = 0

    async def sample(self, db: Database) -> None:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        pool: Any = db.engine.pool
        while True:
            with contextlib.suppress(DBAPIError):  # the server full: sample again later
                async with db.reading() as session:
                    found = int((await session.execute(query)).scalar_one())
                    mine = int(pool.checkedin()) + int(pool.checkedout())
                self.peak = max(self.peak, found - mine)
            await asyncio.sleep(0.5)


LOGGED = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+) (.*)$")
DETAIL = re.compile(r"\b(?:[0-9a-f]{32}|\d+)\b")


def logged(fleet: Fleet) -> Counter[str]:
    """Every worker's warnings and errors, ids and numbers taken out so that alike lines
    count together; with the exception class of a traceback's last line."""
    found: Counter[str] = Counter()
    for worker in fleet.workers:
        for line in worker.log.read_text(errors="replace").splitlines():
            if match := LOGGED.match(line):
                level, logger, message = match.groups()
                found[f"{level} {logger}: {DETAIL.sub('N', message)[:90]}"] += 1
            elif re.match(r"^[a-zA-Z_.]+(?:Error|Exception): ", line):
                found[f"raised {line.split(':', 1)[0]}"] += 1
    return found


async def _warm(db: Database, connections: int = 6) -> None:
    """Open the harness's own connections before the workers start: they stay in its pool,
    so its looks never wait for a free slot on a server the workers have filled."""
    together = asyncio.Barrier(connections)

    async def hold() -> None:
        async with db.reading() as session:
            await session.execute(text("SELECT 1"))
            await together.wait()  # all open at once, so each is a connection of its own

    await asyncio.gather(*(hold() for _ in range(connections)))


async def _watching(fleet: Fleet, load: asyncio.Future[list[None]]) -> None:
    """Wait for the load, failing at once if a worker the harness did not kill exits."""
    while not load.done():
        fleet.check()
        await asyncio.wait({load}, timeout=0.5)
    load.result()


async def _kill_mid_run(
    case: Case, fleet: Fleet, db: Database, customers: list[Customer]
) -> tuple[Worker, TakeoverWatch]:
    total = sum(len(c.turns) for c in customers)
    while True:
        over = sum(t.done_at is not None for c in customers for t in c.turns)
        if over >= case.kill_after * total:
            break
        await asyncio.sleep(0.05)
    victim = await _victim(case, fleet, db)
    killed_at = await fleet.kill(victim)
    watch = TakeoverWatch(db, victim.worker_id, killed_at)
    await watch.snapshot()
    await watch.follow(until=time.monotonic() + case.takeover_within)
    return victim, watch


async def _victim(case: Case, fleet: Fleet, db: Database) -> Worker:
    alive = fleet.alive()
    if case.mode == "webhook":
        return random.Random(case.seed).choice(alive)
    async with db.reading() as session:
        poller = await session.scalar(select(Lease.owner).where(Lease.name == POLLER_LEASE))
    return next((w for w in alive if w.worker_id == poller), alive[0])


async def _settle(db: Database, case: Case) -> None:
    """Wait until the store has nothing left to answer or send (check-ins included)."""
    deadline = time.monotonic() + case.patience
    while time.monotonic() < deadline:
        view = await store_view(db)
        if not view.busy:
            return
        await asyncio.sleep(0.2)


async def _sent_by(db: Database) -> dict[str, int]:
    query = select(OutboxItem.claimed_by).where(OutboxItem.status == "sent")
    async with db.reading() as session:
        senders = Counter(str(s) for s in (await session.execute(query)).scalars())
    return dict(sorted(senders.items()))
