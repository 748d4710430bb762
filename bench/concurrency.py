"""Concurrency: many conversations at once with a model that takes one second a call.

Records one inbound message from each of N contacts (default 1,000), then hands all N
conversations to the dispatcher at once. Every model call awaits `--latency` seconds (1 s)
before answering, so a run is mostly waiting, and with MAX_CONCURRENT_RUNS slots the best
possible time is ceil(N / slots) * steps * latency. Measured from the moment the
conversations are handed over to the last reply delivered by the outbox worker. Usage:

    python -m bench.concurrency [--conversations 1000] [--steps 1|2] [--database-url URL]
                                [--json PATH] [--quick]

It runs twice, with MAX_CONCURRENT_RUNS at its default and at N, and prints turns per second
against the ideal, the efficiency (ideal time / measured time), the most model calls that
were in flight at once and, to explain a shortfall, where the time went: when the model
calls started and ended, how long delivery trailed behind, how busy the event loop's CPU
was and how many statements and commits the store ran per turn. Recording the inbound
messages is timed on its own and is not part of the measured window.

On PostgreSQL (`--database-url postgresql+asyncpg://...`) each case runs in a scratch
database created on that server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine as SyncEngine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from agents import catalog
from agents.definition import parse_definition
from agents.messages import ModelRequest, ModelTurn, ToolCall, ToolResult, Usage
from agents.providers.base import Provider
from bench.results_io import Record, write_results
from bot.app.wiring import App
from bot.core.settings import Settings
from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, record_inbound
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Sent

BENCHMARK = "concurrency"
AGENT = "bench-concurrency"
DEFAULT_SLOTS = Settings.model_fields["max_concurrent_runs"].default
EFFICIENCY_TARGET = ">= 0.9"
REPLY = "Thanks for your message, we will look into it."


class PacedModel(Provider):
    """A model whose every call awaits `latency` seconds, then answers with text.

    With `steps` 2 the first call of a run asks for `get_contact` and the second answers, so a
    turn is two model calls with a tool call between them. It counts the calls in flight.
    """

    name = "paced"

    def __init__(self, latency: float, steps: int = 1) -> None:
        self.latency, self.steps = latency, steps
        self.in_flight = self.max_in_flight = 0
        self.started: list[float] = []
        self.ended: list[float] = []

    async def complete(self, request: ModelRequest) -> ModelTurn:
        self.started.append(time.perf_counter())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
            self.ended.append(time.perf_counter())
        usage = Usage(200, 20)
        if self.steps > 1 and not any(isinstance(m, ToolResult) for m in request.messages):
            lookup = ToolCall("call-get-contact", "get_contact", {}, "{}")
            return ModelTurn(tool_calls=(lookup,), usage=usage, model=request.model)
        return ModelTurn(text=REPLY, usage=usage, model=request.model)


class CountingChannel(Channel):
    """Delivers instantly and remembers when each conversation's first reply went out."""

    name = "console"

    def __init__(self) -> None:
        self.delivered_at: dict[int, float] = {}
        self._delivered = asyncio.Event()

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        if item.conversation_id is not None:
            self.delivered_at.setdefault(item.conversation_id, time.perf_counter())
        self._delivered.set()
        return Sent(f"bench-{item.id}")

    async def wait_for(self, conversations: int) -> None:
        """Return once `conversations` conversations have had a reply."""
        while len(self.delivered_at) < conversations:
            self._delivered.clear()
            await self._delivered.wait()


@contextmanager
def counting_statements() -> Iterator[Counter[str]]:
    """Count the statements every engine sends (by first word) and the commits, until exit."""
    counts: Counter[str] = Counter()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counts[sql.split(maxsplit=1)[0].upper()] += 1

    def commit(_conn: Any) -> None:
        counts["commits"] += 1

    event.listen(SyncEngine, "before_cursor_execute", statement)
    event.listen(SyncEngine, "commit", commit)
    try:
        yield counts
    finally:
        event.remove(SyncEngine, "before_cursor_execute", statement)
        event.remove(SyncEngine, "commit", commit)


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()


@asynccontextmanager
async def scratch_database(url: str | None) -> AsyncIterator[str]:
    """A fresh, empty database: a temporary SQLite file, or one created beside `url` on its
    PostgreSQL server (dropped afterwards), so a benchmark never touches existing data."""
    if url is None or backend_of(url) == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    base = make_url(url)
    name = f"{base.database or 'crmbot'}_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def bench_settings(url: str, **changes: object) -> Settings:
    """Settings for a benchmark app; no `.env` of the working directory is read."""
    return Settings(
        _env_file=None,
        database_url=url,
        llm_provider="offline",
        default_agent=AGENT,
        **changes,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running_app(settings: Settings, model: Provider, channel: Channel) -> AsyncIterator[App]:
    """A started app whose agents use `model`, with its outbox worker delivering to
    `channel` in the background; closed (runs finished, outbox flushed) on the way out."""
    app = App(settings, quiet_seconds=0, seed_agents=False)
    app.providers.register("offline", model)
    app.add_channel(channel)
    worker = app.outbox_workers[channel.name]
    await app.start()
    definition = parse_definition(
        {
            "name": AGENT,
            "goal": "Answer each inbound message once, briefly.",
            "persona": "A benchmark agent.",
            "tools": ["send_message", "get_contact"],
            "max_steps": 4,
        }
    )
    async with app.db.transaction() as session:
        await catalog.save(session, definition)
    delivery = asyncio.create_task(worker.run_forever(), name="bench-outbox")
    try:
        yield app
    finally:
        worker.stop()
        await delivery
        await app.aclose()


@asynccontextmanager
async def sweeping(app: App) -> AsyncIterator[None]:
    """Run the dispatcher's sweep as `serve` does, so a driver that failed (a pool timeout,
    say) is picked up again. Started only once the messages are handed over: during intake it
    would start conversations early."""
    sweeper = asyncio.create_task(app.dispatcher.run_sweeper(), name="bench-sweeper")
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)


async def record_messages(app: App, contacts: list[str], prefix: str) -> list[int]:
    """One inbound message from each contact, recorded as a channel records it; returns the
    conversation ids, in order."""
    conversation_ids = []
    for n, contact in enumerate(contacts):
        inbound = InboundMessage(
            Identity("console", contact, name=contact), f"{prefix}-{n}", f"hello, message {n}"
        )
        async with app.db.transaction() as session:
            recorded = await record_inbound(session, inbound)
        assert recorded is not None
        conversation_ids.append(recorded.conversation.id)
    return conversation_ids


@dataclass(frozen=True, slots=True)
class Case:
    """One configuration to measure."""

    conversations: int
    slots: int
    """MAX_CONCURRENT_RUNS."""
    steps: int
    """Model calls per turn."""
    latency: float
    """Seconds each model call takes."""
    give_up_s: float
    """Stop waiting for replies after this long (also the runs' wall-clock cap)."""

    @property
    def ideal_s(self) -> float:
        return math.ceil(self.conversations / self.slots) * self.steps * self.latency

    @property
    def label(self) -> str:
        return f"{self.conversations} conversations, {self.slots} slots, {self.steps} step(s)"


@dataclass
class Outcome:
    """What one case measured; times are seconds from the hand-over."""

    case: Case
    intake_s: float
    elapsed_s: float
    delivered: int
    max_in_flight: int
    cpu_s: float
    statements: int
    commits: int
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    deliveries: list[float] = field(default_factory=list)

    @property
    def turns_per_s(self) -> float:
        return self.delivered / self.elapsed_s

    @property
    def ideal_turns_per_s(self) -> float:
        """NaN for an instant model (`--latency 0`): nothing bounds it."""
        ideal = self.case.ideal_s
        return self.case.conversations / ideal if ideal > 0 else math.nan

    @property
    def efficiency(self) -> float:
        """Ideal time over measured time; 0 when some replies never came."""
        if self.delivered < self.case.conversations:
            return 0.0
        return self.case.ideal_s / self.elapsed_s if self.case.ideal_s > 0 else math.nan


async def measure(url: str, case: Case) -> Outcome:
    model = PacedModel(case.latency, case.steps)
    channel = CountingChannel()
    settings = bench_settings(
        url, max_concurrent_runs=case.slots, run_timeout_seconds=case.give_up_s
    )
    async with running_app(settings, model, channel) as app:
        prefix = uuid.uuid4().hex[:8]
        contacts = [f"c-{prefix}-{n}" for n in range(case.conversations)]
        began = time.perf_counter()
        ids = await record_messages(app, contacts, prefix)
        intake_s = time.perf_counter() - began
        with counting_statements() as counts:
            cpu, started = time.process_time(), time.perf_counter()
            for conversation_id in ids:
                app.dispatcher.notify(conversation_id)
            async with sweeping(app):
                try:
                    await asyncio.wait_for(channel.wait_for(case.conversations), case.give_up_s)
                except TimeoutError:
                    print(f"  gave up after {case.give_up_s:.0f}s")
            last = max(channel.delivered_at.values(), default=time.perf_counter())
            cpu_s = time.process_time() - cpu
    return Outcome(
        case=case,
        intake_s=intake_s,
        elapsed_s=last - started,
        delivered=len(channel.delivered_at),
        max_in_flight=model.max_in_flight,
        cpu_s=cpu_s,
        statements=sum(v for k, v in counts.items() if k != "commits"),
        commits=counts["commits"],
        starts=[t - started for t in model.started],
        ends=[t - started for t in model.ended],
        deliveries=[t - started for t in channel.delivered_at.values()],
    )


def _quantile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def report(outcome: Outcome, backend: str) -> None:
    o, case = outcome, outcome.case
    turns = max(o.delivered, 1)
    print(
        f"{backend}, {case.conversations} conversations, MAX_CONCURRENT_RUNS={case.slots}, "
        f"{case.steps} model call(s) of {case.latency:g}s per turn:"
    )
    print(
        f"  {o.delivered} replies in {o.elapsed_s:.2f}s = {o.turns_per_s:.0f} turns/s; "
        f"ideal {case.ideal_s:.2f}s = {o.ideal_turns_per_s:.0f} turns/s; "
        f"efficiency {o.efficiency:.2f} (target {EFFICIENCY_TARGET})"
    )
    print(f"  most model calls in flight at once: {o.max_in_flight}")
    last_call = max(o.ends, default=math.nan)
    print(
        f"  model calls started: first {min(o.starts, default=math.nan):.2f}s, half by "
        f"{_quantile(o.starts, 0.5):.2f}s, all by {max(o.starts, default=math.nan):.2f}s; "
        f"the last ended {last_call:.2f}s"
    )
    print(
        f"  replies delivered: first {min(o.deliveries, default=math.nan):.2f}s, "
        f"{sum(t <= last_call for t in o.deliveries)} by the end of the last model call, "
        f"the last {o.elapsed_s:.2f}s"
    )
    cpu_ms = o.cpu_s / turns * 1000
    print(
        f"  process CPU {o.cpu_s:.2f}s in {o.elapsed_s:.2f}s ({o.cpu_s / o.elapsed_s:.0%}): "
        f"{cpu_ms:.1f} ms a turn, so at most ~{1000 / cpu_ms:.0f} turns/s on one event loop "
        f"whatever the slots; {o.statements / turns:.1f} statements, "
        f"{o.commits / turns:.1f} commits a turn"
    )
    print(
        f"  (recording the {case.conversations} inbound messages beforehand took "
        f"{o.intake_s:.2f}s, outside the measured window)"
    )


def records(outcome: Outcome, backend: str) -> list[Record]:
    o = outcome
    rows: list[tuple[str, float, str, str | None]] = [
        ("turns_per_s", o.turns_per_s, "turns/s", None),
        ("ideal_turns_per_s", o.ideal_turns_per_s, "turns/s", None),
        ("efficiency", o.efficiency, "", EFFICIENCY_TARGET),
        ("max_in_flight", float(o.max_in_flight), "runs", None),
    ]
    return [
        Record(
            benchmark=BENCHMARK,
            case=o.case.label,
            metric=metric,
            value=round(value, 4),
            unit=unit,
            target=target,
            backend=backend,
        )
        for metric, value, unit, target in rows
        if not math.isnan(value)
    ]


async def main(args: argparse.Namespace) -> list[Record]:
    conversations = args.conversations or (300 if args.quick else 1000)
    slots = list(dict.fromkeys(args.slots or [DEFAULT_SLOTS, conversations]))
    backend = backend_of(args.database_url) if args.database_url else "sqlite"
    results: list[Record] = []
    for n in slots:
        case = Case(conversations, n, args.steps, args.latency, args.give_up)
        async with scratch_database(args.database_url) as url:
            outcome = await measure(url, case)
        report(outcome, backend)
        results += records(outcome, backend)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--conversations", type=int, default=None, help="default 1000 (quick 300)")
    parser.add_argument("--steps", type=int, choices=(1, 2), default=1, help="model calls a turn")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    parser.add_argument(
        "--slots", type=int, action="append", help="MAX_CONCURRENT_RUNS; repeat for more cases"
    )
    parser.add_argument("--give-up", type=float, default=600.0, help="seconds to wait at most")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", default=None, help="write the records here")
    parser.add_argument("--quick", action="store_true", help="300 conversations")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    write_results(arguments.json, asyncio.run(main(arguments)))
