"""Throughput of the whole inbound path on the offline provider.

Records N inbound messages from C contacts, lets the dispatcher answer them (route, guardrails,
loop, tools, audit, outbox) and the outbox worker deliver the replies, and prints messages per
second and per-reply latency. Usage:

    python -m bench.engine [--messages 400] [--contacts 40] [--database-url URL]
        [--quick] [--json PATH]

It also counts the SQL statements and transactions the store ran, per answered message
(intake, runs, audit and delivery together).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine as SyncEngine

from agents import catalog
from agents.definition import TEMPLATES_DIR
from bench.results_io import Record, write_results
from bot.app.wiring import App
from bot.core.settings import Settings
from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, record_inbound_batch
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Sent


class TimingChannel(Channel):
    name = "console"

    def __init__(self) -> None:
        self.delivered_at: dict[int, float] = {}

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        self.delivered_at.setdefault(item.conversation_id, time.perf_counter())
        return Sent(f"bench-{item.id}")


def count_statements() -> Counter[str]:
    """Count every statement sent to any database by its first word (BEGIN, SELECT, ...),
    and the commits."""
    counts: Counter[str] = Counter()

    @event.listens_for(SyncEngine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts[statement.split(maxsplit=1)[0].upper()] += 1

    @event.listens_for(SyncEngine, "commit")
    def _commit(_conn: Any) -> None:
        counts["commits"] += 1

    return counts


@dataclass(frozen=True)
class Figures:
    """What one run measured."""

    messages: int
    contacts: int
    backend: str
    elapsed: float
    counts: Counter[str]
    latencies: list[float]
    """Seconds from each conversation's first message to its first delivered reply."""

    @property
    def statements_per_message(self) -> float:
        return (sum(self.counts.values()) - self.counts["commits"]) / self.messages

    @property
    def commits_per_message(self) -> float:
        return self.counts["commits"] / self.messages


async def measure(messages: int, contacts: int, url: str) -> Figures:
    settings = Settings(database_url=url, llm_provider="offline", default_agent="lead-qualifying")
    app = App(settings, quiet_seconds=0)
    channel = TimingChannel()
    app.add_channel(channel)
    worker = app.outbox_workers[channel.name]
    await app.start()
    async with app.db.transaction() as session:
        await catalog.import_paths(session, [TEMPLATES_DIR])
    delivery = asyncio.create_task(worker.run_forever())
    counts = count_statements()
    prefix = uuid.uuid4().hex[:8]
    received_at: dict[int, float] = {}
    started = time.perf_counter()
    for n in range(messages):
        contact = f"bench-{prefix}-{n % contacts}"
        inbound = InboundMessage(
            Identity("console", contact, name=contact), f"{prefix}-{n}", f"message {n}"
        )
        async with app.db.transaction() as session:  # as a channel records its batch
            [stored] = await record_inbound_batch(session, [inbound])
            await app.take_turns(session, [stored.conversation_id])
        received_at.setdefault(stored.conversation_id, time.perf_counter())
        app.dispatcher.notify(stored.conversation_id)
    await app.dispatcher.idle()
    await app.flush_outbox()
    elapsed = time.perf_counter() - started
    delivery.cancel()
    latencies = [
        channel.delivered_at[c] - t for c, t in received_at.items() if c in channel.delivered_at
    ]
    await app.aclose()
    backend = url.split(":", 1)[0]
    return Figures(messages, contacts, backend, elapsed, counts, latencies)


def show(figures: Figures) -> None:
    messages, elapsed = figures.messages, figures.elapsed
    print(
        f"{figures.backend}: {messages} messages from {figures.contacts} contacts in "
        f"{elapsed:.2f}s = {messages / elapsed:.0f} msg/s through route+loop+audit+outbox"
    )
    print(
        f"store work per answered message: {figures.statements_per_message:.1f} statements, "
        f"{figures.commits_per_message:.1f} committed transactions"
    )
    if latencies := figures.latencies:
        q = statistics.quantiles(latencies, n=20)
        print(
            f"first-reply latency: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {q[-1] * 1000:.0f} ms"
        )


def records(figures: Figures) -> list[Record]:
    backend = "postgresql" if figures.backend.startswith("postgresql") else "sqlite"

    def record(metric: str, value: float, unit: str, target: str | None = None) -> Record:
        return Record(
            benchmark="engine",
            case="inbound path, offline provider",
            metric=metric,
            value=value,
            unit=unit,
            target=target,
            backend=backend,
        )

    found = [
        record("throughput", figures.messages / figures.elapsed, "msg/s"),
        record("statements_per_msg", figures.statements_per_message, ""),
        record("commits_per_msg", figures.commits_per_message, "", "<= 3"),
    ]
    if len(figures.latencies) >= 2:
        q = statistics.quantiles(figures.latencies, n=20)
        found.append(
            record("first_reply_p50_ms", statistics.median(figures.latencies) * 1000, "ms")
        )
        found.append(record("first_reply_p95_ms", q[-1] * 1000, "ms"))
    return found


async def main(messages: int, contacts: int, url: str, json_path: str | None) -> None:
    figures = await measure(messages, contacts, url)
    show(figures)
    write_results(json_path, records(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="default 400, quick 200")
    parser.add_argument("--contacts", type=int, default=None, help="default 40, quick 20")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", default=None, help="write the records to this file")
    parser.add_argument("--quick", action="store_true", help="a smaller load for a fast run")
    args = parser.parse_args()
    messages = args.messages or (200 if args.quick else 400)
    contacts = args.contacts or (20 if args.quick else 40)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(main(messages, contacts, url, args.json))
