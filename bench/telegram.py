"""Telegram end to end against the local fake Bot API, crmbot against the floor, in one run.

Every prospect sends one message through the fake Bot API (getUpdates serves batches of up
to 100); a bot answers each one with sendMessage. Measured at the fake, which runs in this
process while each bot runs in a subprocess of its own (`--one floor|crmbot`), so that CPU
time and peak RSS belong to one bot configuration and the fake is not on the bot's core:

- latency: from the moment an update is made available at the fake to the moment the fake
  receives the matching sendMessage (p50/p95/p99);
- throughput: prospects answered per second, from the first update made available to the
  last reply; CPU ms per message and peak RSS of the bot's process.

Cases:

1. floor: a bare python-telegram-bot echo bot (Updater polling, updates handled one at a
   time, its faster configuration here), all prospects queued at once;
2. crmbot on SQLite (and on PostgreSQL with --database-url, in a scratch database created
   next to the one named and dropped afterwards): the real Telegram channel, intake, dispatch,
   an instant model whose turn is one tool call (record_answer) then one reply, the engine
   with guardrails and audit, the outbox and delivery. Pacing is raised to 1000 msg/s, since
   the echo bot paces nothing, and the quiet time before answering is 0 (production: 2 s);
3. open loop: crmbot on SQLite with updates injected at a steady half of its measured
   maximum rate, for the latency a lightly loaded bot gives (target p99 < 25 ms);
4. default pacing: crmbot on SQLite at Telegram's free 30 msg/s, which it should reach.

Usage:

    python -m bench.telegram [--prospects 2000] [--quick] [--json PATH] [--database-url URL]
        [--open-loop-seconds 20] [--pacing-prospects 600] [--case-time-limit 600]
        [--profile PATH]

--quick: 500 prospects, an 8 s open loop, 300 prospects at default pacing. A case that is not
answered within --case-time-limit is reported as incomplete (an `answered_share` record).
--profile writes a pyinstrument profile of the crmbot SQLite case (pip install pyinstrument).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from agents import catalog
from agents.definition import TEMPLATES_DIR
from agents.messages import ModelRequest, ModelTurn, UserText
from bench.results_io import Record, write_results
from bot.app.wiring import App, serve
from bot.core.settings import Settings
from channels.telegram.service import TelegramService
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_methods import as_int
from tests.support.models import FunctionModel, call, turn

FIRST_PROSPECT = 10_000
STAFF_CHAT = -1001234567890
ADMIN_ID = 7001
ALWAYS_OPEN = "mon-sun 00:00-00:00"
"""Business hours that never close, so that no run waits for staff hours."""
RAISED_PACING = 1000.0
"""Messages per second crmbot may send in the throughput cases (the setting's maximum)."""
REPLY = "Thanks, noted! How many people are on your team?"
READY, RESULT = "BENCH-READY", "BENCH-RESULT "
OPEN_LOOP_SHARE = 0.5
INJECT_TICK_SECONDS = 0.005


# The bots, each run as `--one CASE` in a process of its own


def instant_model() -> FunctionModel:
    """A model that answers at once: one tool call (record the answer), then one reply."""
    model: FunctionModel

    def answer(request: ModelRequest) -> ModelTurn:
        # FunctionModel keeps every request; here that would grow the bot's RSS with N.
        model.requests.clear()
        last = request.messages[-1] if request.messages else None
        if isinstance(last, UserText):
            return turn("", call("record_answer", {"key": "need", "answer": last.text[:200]}))
        return turn(REPLY)

    model = FunctionModel(answer)
    return model


def crmbot_settings(base_url: str, token: str, database_url: str, pacing: float) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "llm_provider": "offline",
        "telegram_bot_token": token,
        "telegram_base_url": base_url,
        "telegram_staff_chat_id": STAFF_CHAT,
        "telegram_admin_ids": [ADMIN_ID],
        "telegram_max_messages_per_second": pacing,
        "coalesce_seconds": 0,  # each prospect sends one message: nothing to wait for
        "business_hours": ALWAYS_OPEN,
        "default_agent": "lead-qualifying",
        "worker_id": "bench-telegram",
    }
    # No `.env`: a developer's settings must not change the figures.
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def crmbot(settings: Settings) -> AsyncIterator[None]:
    """crmbot's Telegram channel running, as `crmbot run` starts it, with the instant model."""
    app = App(settings, seed_agents=False)
    service = TelegramService(app, settings)
    await app.start()
    async with app.db.transaction() as session:
        await catalog.import_paths(session, [TEMPLATES_DIR])
    app.providers.register("offline", instant_model())
    await service.start()
    task = asyncio.create_task(serve(app, [service.run]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app.aclose()
        await service.stop()


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    del context
    if update.effective_message is not None:
        await update.effective_message.reply_text(update.effective_message.text or "")


@contextlib.asynccontextmanager
async def echo_bot(base_url: str, token: str) -> AsyncIterator[None]:
    """The floor: python-telegram-bot's echo bot, polling, one update at a time."""
    builder = Application.builder().token(token).base_url(base_url).concurrent_updates(False)
    app = builder.build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=25)
        await app.start()
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Sample the whole event loop thread (every task, not one coroutine) into `path`."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler  # optional: only this flag needs it

    profiler = Profiler(interval=0.005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        tree = profiler.output_text(unicode=True)
        flat = profiler.output_text(unicode=True, flat=True)
        Path(path).write_text(f"{tree}\n\nBy self time:\n{flat}")


async def run_one(args: argparse.Namespace) -> None:
    """Start one bot, say so, serve until told to stop, then report CPU and peak RSS."""
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        bot = (
            echo_bot(args.base_url, args.token)
            if args.one == "floor"
            else crmbot(crmbot_settings(args.base_url, args.token, url, args.pacing))
        )
        async with bot:
            started = cpu_seconds()
            print(READY, flush=True)
            with profiled(args.profile):
                await asyncio.to_thread(sys.stdin.readline)
            used = cpu_seconds() - started
            # Before the shutdown, which may have a backlog to finish when a case timed out.
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(RESULT + json.dumps({"cpu_s": used, "peak_rss_mb": peak_kb / 1024}), flush=True)


# The load and the measurements, at the fake


@dataclasses.dataclass(frozen=True)
class Case:
    """One bot configuration under one load."""

    name: str
    bot: str
    """floor | crmbot"""
    prospects: int
    backend: str | None = None
    database_url: str | None = None
    pacing: float = RAISED_PACING
    rate: float | None = None
    """Updates made available per second; None: all at once."""
    profile: str | None = None
    time_limit: float = 600
    """Seconds to wait for the replies; a case that runs out is reported as incomplete."""


@dataclasses.dataclass
class Measured:
    case: Case
    made_available: dict[int, float]
    answered: dict[int, float]
    cpu_s: float
    peak_rss_mb: float

    @property
    def complete(self) -> bool:
        return len(self.answered) == self.case.prospects

    @property
    def latencies_ms(self) -> list[float]:
        """Of the prospects answered (all of them, unless the case timed out)."""
        return [
            (self.answered[c] - t) * 1000
            for c, t in self.made_available.items()
            if c in self.answered
        ]

    @property
    def throughput(self) -> float:
        elapsed = max(self.answered.values()) - min(self.made_available.values())
        return len(self.answered) / elapsed

    @property
    def cpu_ms_per_msg(self) -> float:
        return self.cpu_s * 1000 / len(self.answered)


class Replies:
    """The first sendMessage to each prospect's chat, found by reading `fake.calls` once."""

    def __init__(self, fake: FakeTelegram, prospects: set[int]) -> None:
        self.fake, self.prospects = fake, prospects
        self.answered: dict[int, float] = {}
        self._read = 0

    def scan(self) -> int:
        calls = self.fake.calls
        for current in calls[self._read :]:
            if current.method.lower() != "sendmessage":
                continue
            chat = as_int(current.params.get("chat_id"))
            if chat in self.prospects and chat not in self.answered:
                self.answered[chat] = current.at
        self._read = len(calls)
        return len(self.answered)


def make_available(fake: FakeTelegram, prospect: int, made_available: dict[int, float]) -> None:
    fake.user_message(prospect, f"We need a CRM for {prospect}", first_name=f"P{prospect}")
    made_available[prospect] = time.monotonic()


async def inject(fake: FakeTelegram, case: Case, made_available: dict[int, float]) -> None:
    """All prospects at once, or at a steady `case.rate`."""
    prospects = range(FIRST_PROSPECT, FIRST_PROSPECT + case.prospects)
    if case.rate is None:
        for prospect in prospects:
            make_available(fake, prospect, made_available)
        return
    started, done = time.monotonic(), 0
    while done < case.prospects:
        due = min(case.prospects, int((time.monotonic() - started) * case.rate) + 1)
        for prospect in prospects[done:due]:
            make_available(fake, prospect, made_available)
        done = due
        await asyncio.sleep(INJECT_TICK_SECONDS)


async def until_answered(replies: Replies, count: int, limit: float) -> None:
    """Until every prospect is answered, or `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if replies.scan() >= count:
            return
        await asyncio.sleep(0.02)  # the fake signals no calls: read them as they come


def child_command(case: Case, fake: FakeTelegram) -> list[str]:
    command = [sys.executable, "-m", "bench.telegram", "--one", case.bot]
    command += ["--base-url", fake.base_url, "--token", fake.token, "--pacing", str(case.pacing)]
    if case.database_url:
        command += ["--database-url", case.database_url]
    if case.profile:
        command += ["--profile", case.profile]
    return command


async def read_marked(process: asyncio.subprocess.Process, marker: str) -> str:
    """The rest of the first stdout line that starts with `marker`."""
    assert process.stdout is not None
    while line := (await process.stdout.readline()).decode():
        if line.startswith(marker):
            return line[len(marker) :].strip()
    raise RuntimeError(f"the bot exited (status {await process.wait()}) before {marker!r}")


async def measure(case: Case) -> Measured:
    """Run `case`: a fresh fake, the bot in a subprocess, the load, the replies."""
    with tempfile.TemporaryFile("w+") as errors:
        try:
            async with FakeTelegram() as fake:
                fake.add_supergroup(STAFF_CHAT, "Staff")
                pipe = asyncio.subprocess.PIPE
                process = await asyncio.create_subprocess_exec(
                    *child_command(case, fake), stdin=pipe, stdout=pipe, stderr=errors
                )
                try:
                    return await drive(case, fake, process)
                finally:
                    await stop_child(process)
        finally:
            show_errors(case, errors)


async def drive(case: Case, fake: FakeTelegram, process: asyncio.subprocess.Process) -> Measured:
    assert process.stdin is not None
    await asyncio.wait_for(read_marked(process, READY), 120)
    made_available: dict[int, float] = {}
    replies = Replies(fake, set(range(FIRST_PROSPECT, FIRST_PROSPECT + case.prospects)))
    injecting = asyncio.create_task(inject(fake, case, made_available))
    await until_answered(replies, case.prospects, case.time_limit)
    injecting.cancel()  # finished, unless the case ran out of time
    process.stdin.write(b"stop\n")
    await process.stdin.drain()
    usage = json.loads(await asyncio.wait_for(read_marked(process, RESULT), 120))
    if not replies.answered:
        raise RuntimeError(f"{case.name}: no prospect answered within {case.time_limit:.0f} s")
    return Measured(case, made_available, replies.answered, usage["cpu_s"], usage["peak_rss_mb"])


async def stop_child(process: asyncio.subprocess.Process, grace: float = 60) -> None:
    """Let the bot stop cleanly (end of its stdin), and kill it if it takes too long."""
    if process.stdin is not None and process.returncode is None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


def show_errors(case: Case, errors: IO[str]) -> None:
    """What the bot logged (errors only), summed up: it belongs with the figures."""
    errors.seek(0)
    lines = errors.read().splitlines()
    if lines:
        print(f"  ({case.name}: the bot logged {len(lines)} error lines, e.g.:", file=sys.stderr)
        for line in lines[:3]:
            print(f"    {line[:160]}", file=sys.stderr)
        print("  )", file=sys.stderr)


@contextlib.asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """A new PostgreSQL database next to the one `url` names, dropped afterwards, so that every
    run starts empty and nothing of the named database is touched."""
    base = make_url(url)
    name = f"{base.database}_bench_telegram_{os.getpid()}"
    await _admin(base, f'DROP DATABASE IF EXISTS "{name}"')
    await _admin(base, f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(base: URL, statement: str) -> None:
    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


# Figures and records


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


def describe(measured: Measured) -> str:
    p = percentiles(measured.latencies_ms)
    case, answered = measured.case, len(measured.answered)
    count = (
        f"{answered} prospects"
        if measured.complete
        else f"{answered} of {case.prospects} prospects (TIMED OUT after {case.time_limit:.0f} s)"
    )
    name = f"{case.name} ({case.backend})" if case.backend else case.name
    return (
        f"{name}: {count}, {measured.throughput:,.0f} msg/s, p50/p95/p99 "
        f"{p['p50_ms']:.1f}/{p['p95_ms']:.1f}/{p['p99_ms']:.1f} ms, "
        f"{measured.cpu_ms_per_msg:.2f} CPU ms/msg, peak RSS {measured.peak_rss_mb:.0f} MB"
    )


def record(
    measured: Measured, metric: str, value: float, unit: str, target: str | None = None
) -> Record:
    case = measured.case
    return Record(
        benchmark="telegram",
        case=case.name,
        metric=metric,
        value=value,
        unit=unit,
        target=target,
        backend=case.backend,
    )


def closed_loop_records(measured: Measured, floor: Measured | None) -> list[Record]:
    records = [record(measured, "throughput", measured.throughput, "msg/s")]
    if floor is not None and measured is not floor:
        ratio = measured.throughput / floor.throughput
        records.append(record(measured, "ratio_to_floor", ratio, "", ">= 0.5"))
    p = percentiles(measured.latencies_ms)
    records += [record(measured, metric, value, "ms") for metric, value in p.items()]
    return records + usage_records(measured)


def usage_records(measured: Measured) -> list[Record]:
    records = [
        record(measured, "cpu_ms_per_msg", measured.cpu_ms_per_msg, "ms"),
        record(measured, "peak_rss_mb", measured.peak_rss_mb, "MB"),
    ]
    if not measured.complete:
        share = len(measured.answered) / measured.case.prospects
        records.append(record(measured, "answered_share", share, "", "1"))
    return records


def open_loop_records(measured: Measured) -> list[Record]:
    assert measured.case.rate is not None
    p = percentiles(measured.latencies_ms)
    records = [record(measured, "offered_rate", measured.case.rate, "msg/s")]
    records += [
        record(measured, metric, value, "ms", "< 25" if metric == "p99_ms" else None)
        for metric, value in p.items()
    ]
    return records + usage_records(measured)


# Running the cases


@dataclasses.dataclass(frozen=True)
class Plan:
    prospects: int
    open_loop_seconds: float
    pacing_prospects: int
    database_url: str | None
    profile: str | None
    time_limit: float


def say(line: str) -> None:
    print(line, flush=True)


async def run_all(plan: Plan) -> list[Record]:
    """Every case in turn; the open loop's rate comes from crmbot's measured maximum."""
    floor = await measure(Case("floor", "floor", plan.prospects, time_limit=plan.time_limit))
    say(describe(floor))
    sqlite = await run_closed_loop(plan, floor, "sqlite", None)
    records = closed_loop_records(floor, None) + closed_loop_records(sqlite, floor)
    if plan.database_url:
        async with scratch_database(plan.database_url) as url:
            postgresql = await run_closed_loop(plan, floor, "postgresql", url)
        records += closed_loop_records(postgresql, floor)
    records += await run_open_loop(plan, sqlite.throughput * OPEN_LOOP_SHARE)
    return records + await run_default_pacing(plan)


async def run_closed_loop(plan: Plan, floor: Measured, backend: str, url: str | None) -> Measured:
    """crmbot with pacing raised, all prospects at once (profiled on SQLite if asked)."""
    profile = plan.profile if backend == "sqlite" else None
    case = Case("crmbot", "crmbot", plan.prospects, backend, url, profile=profile)
    measured = await measure(dataclasses.replace(case, time_limit=plan.time_limit))
    say(f"{describe(measured)}, {measured.throughput / floor.throughput:.2f}x the floor")
    return measured


async def run_open_loop(plan: Plan, rate: float) -> list[Record]:
    count = max(int(rate * plan.open_loop_seconds), 20)
    case = Case("crmbot open loop", "crmbot", count, "sqlite", rate=rate)
    measured = await measure(dataclasses.replace(case, time_limit=plan.time_limit))
    say(f"{describe(measured)}, offered {rate:,.1f} msg/s")
    return open_loop_records(measured)


async def run_default_pacing(plan: Plan) -> list[Record]:
    case = Case("crmbot default pacing", "crmbot", plan.pacing_prospects, "sqlite", pacing=30)
    measured = await measure(dataclasses.replace(case, time_limit=plan.time_limit))
    say(f"{describe(measured)}; Telegram's free limit is 30 msg/s")
    rate = measured.throughput
    return [record(measured, "default_pacing_rate", rate, "msg/s", ">= 27")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=None, help="default 2000, quick 500")
    parser.add_argument("--quick", action="store_true", help="a smaller load for a fast run")
    parser.add_argument("--json", default=None, help="write the records to this file")
    parser.add_argument("--database-url", default=None, help="also run crmbot on PostgreSQL")
    parser.add_argument("--open-loop-seconds", type=float, default=None, help="default 20")
    parser.add_argument("--pacing-prospects", type=int, default=None, help="default 600")
    parser.add_argument("--profile", default=None, help="pyinstrument text profile of crmbot")
    parser.add_argument(
        "--case-time-limit", type=float, default=600, help="seconds per case (then: incomplete)"
    )
    # A bot process of one case, started by the run above
    parser.add_argument("--one", choices=["floor", "crmbot"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--pacing", type=float, default=RAISED_PACING, help=argparse.SUPPRESS)
    return parser.parse_args()


def plan_from(args: argparse.Namespace) -> Plan:
    return Plan(
        prospects=args.prospects or (500 if args.quick else 2000),
        open_loop_seconds=args.open_loop_seconds or (8 if args.quick else 20),
        pacing_prospects=args.pacing_prospects or (300 if args.quick else 600),
        database_url=args.database_url,
        profile=args.profile,
        time_limit=args.case_time_limit,
    )


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    # A bot process that exits with a request in flight resets its connection to the fake.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    records = await run_all(plan_from(args))
    write_results(args.json, records)


def entry(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    return run_one(args) if args.one else main(args)


if __name__ == "__main__":
    asyncio.run(entry(parse_args()))
