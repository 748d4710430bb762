"""Sending limits: does crmbot send as fast as Telegram allows, and never faster?

A fake Telegram Bot API (tests/support's FakeTelegram) that, like Telegram, answers HTTP 429
("Too Many Requests: retry after N", with `parameters.retry_after`) to a sendMessage or
copyMessage past any of its limits, each a sliding window over the sends it accepted:

- 30 messages in any second, overall;
- 1 message in any second, per private chat (a positive chat id);
- 20 messages in any minute, per group (a negative chat id: the staff supergroup).

A refused send is not acted on and does not count against a window; other methods
(createForumTopic, setMyCommands, ...) are not limited.

The workload, seeded: M messages queued at once in the outbox, most to C private chats (in
bursts of 1, 3 or 5 consecutive messages to one chat, as split or rapid replies are), and G
staff posts about T contacts, each into that contact's forum topic of the staff supergroup.
crmbot delivers them through its real outbound path with its default settings
(TELEGRAM_MAX_MESSAGES_PER_SECOND and all): the outbox workers of `App`, the Telegram
channel as `TelegramService` wires it (`CustomerChannel`, `StaffChannel`, their shared
`Pacing`, `send_text`) and python-telegram-bot's Bot on the fake's base_url. The updates
poller is not run: nothing comes in.

The limit of the workload is its shortest possible span from the first send to the last, S,
the largest of three bounds (a window of K sends per W seconds lets n sends span no less
than floor((n - 1) / K) * W): all M sends under 30/s, the G group posts under 20/min, and the
busiest private chat under 1/s. The rate is (sends - 1) / span, measured at the server, and
its limit (M - 1) / S; the same is shown for the private chats and the group on their own.

No schedule can be shorter than S, so the limit is an upper bound on the rate. To say why a
rate falls short, the benchmark also notes (wrapping, not changing, crmbot's methods) when
`Pacing` granted each send its slot, when `deliver` began, and when each worker pass ran.

The database is a temporary SQLite file, or with --database-url a PostgreSQL server on
loopback, where the run makes a scratch database of its own and drops it afterwards.

Usage:

    python -m bench.sending [--quick] [--messages 3000] [--chats 300] [--group-messages 60]
        [--topics 6] [--seed 1] [--time-limit 600] [--database-url URL] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ipaddress
import itertools
import logging
import math
import random
import re
import statistics
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.results_io import Record, write_results
from bot.app.delivery import OutboxWorker
from bot.app.wiring import App, serve
from bot.core.settings import Settings
from bot.desk.staff import notify_staff
from bot.store import outbox
from bot.store.db import Database
from bot.store.models import Contact, Conversation, OutboxItem
from channels.base import DeliveryResult
from channels.telegram.normalize import CHANNEL
from channels.telegram.service import TelegramService
from tests.support.fake_telegram import Call, FakeTelegram
from tests.support.fake_telegram_methods import ApiError, Handler, as_int
from tests.support.fake_telegram_updates import JSON

BENCHMARK = "sending"
STAFF_CHAT = -1001234567890
KEY = re.compile(r"^sending (\d+):")
SEND_METHODS = ("sendmessage", "copymessage")
BURSTS = (1, 1, 1, 1, 1, 1, 1, 3, 3, 5)
"""Sizes of the runs of consecutive messages to one private chat, drawn uniformly."""
QUICK = {"messages": 600, "chats": 60, "group_messages": 20}
FULL = {"messages": 3000, "chats": 300, "group_messages": 60}


# --- Telegram's limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """At most `count` accepted sends in any `seconds`."""

    name: str
    count: int
    seconds: float

    def shortest_span(self, sends: int) -> float:
        """The least time from the first of `sends` to the last that this limit allows."""
        return (max(sends - 1, 0) // self.count) * self.seconds


OVERALL = Limit("overall 30/s", 30, 1.0)
PRIVATE = Limit("private chat 1/s", 1, 1.0)
GROUP = Limit("group 20/min", 20, 60.0)


class SlidingWindow:
    """The accepted sends of one limit's scope within its last `seconds`."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float | None:
        """Seconds until one more send fits, or None if it fits now."""
        while self.times and self.times[0] <= now - self.limit.seconds:
            self.times.popleft()
        if len(self.times) < self.limit.count:
            return None
        return self.times[0] + self.limit.seconds - now


@dataclass(frozen=True)
class Rejection:
    """One 429: which limit, to which chat, and the accepted sends already in that window."""

    at: float
    number: int | None
    chat_id: int
    limit: Limit
    retry_after: int
    window: tuple[float, ...]


class LimitedTelegram(FakeTelegram):
    """FakeTelegram enforcing Telegram's send limits, with sliding windows, on send methods."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.overall = SlidingWindow(OVERALL)
        self.per_chat: dict[int, SlidingWindow] = {}
        self.rejections: list[Rejection] = []
        for method in SEND_METHODS:
            self.methods[method] = self._limited(self.methods[method])

    def _limited(self, handler: Handler) -> Handler:
        async def limited(params: JSON) -> Any:
            chat_id = as_int(params.get("chat_id")) or 0
            now = time.monotonic()
            windows = (self._chat_window(chat_id), self.overall)
            self._refuse_if_full(params, chat_id, now, windows)
            result = await handler(params)  # a 400 or 403 sends nothing, so it counts for nothing
            for window in windows:
                window.times.append(now)
            return result

        return limited

    def _chat_window(self, chat_id: int) -> SlidingWindow:
        if chat_id not in self.per_chat:
            self.per_chat[chat_id] = SlidingWindow(GROUP if chat_id < 0 else PRIVATE)
        return self.per_chat[chat_id]

    def _refuse_if_full(
        self, params: JSON, chat_id: int, now: float, windows: Iterable[SlidingWindow]
    ) -> None:
        for window in windows:
            wait = window.wait(now)
            if wait is None:
                continue
            retry_after = max(1, math.ceil(wait))  # Telegram says whole seconds
            number = bench_number(str(params.get("text", "")))
            self.rejections.append(
                Rejection(now, number, chat_id, window.limit, retry_after, tuple(window.times))
            )
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def bench_number(text: str) -> int | None:
    match = KEY.match(text)
    return int(match.group(1)) if match else None


# --- the workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One message to queue: to a private chat, or a staff post about a contact."""

    number: int
    chat: int
    """Index of the private chat, or of the contact the staff post is about."""
    staff: bool


@dataclass
class Workload:
    """What to send, in the order it is queued."""

    messages: int
    chats: int
    group_messages: int
    topics: int
    seed: int
    sends: list[Send] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        private = self._bursts(rng, self.messages - self.group_messages)
        staff = [n % self.topics for n in range(self.group_messages)]
        self.sends = _interleave(private, staff)

    def _bursts(self, rng: random.Random, count: int) -> list[int]:
        """Chat indexes, in runs of consecutive messages to the same chat."""
        chats: list[int] = []
        while len(chats) < count:
            chats += [rng.randrange(self.chats)] * min(rng.choice(BURSTS), count - len(chats))
        return chats

    @property
    def busiest(self) -> int:
        """The most messages to one private chat."""
        counts = Counter(send.chat for send in self.sends if not send.staff)
        return max(counts.values(), default=0)

    def bounds(self) -> dict[str, float]:
        """The shortest span each limit allows this workload, by limit."""
        return {
            OVERALL.name: OVERALL.shortest_span(self.messages),
            GROUP.name: GROUP.shortest_span(self.group_messages),
            PRIVATE.name: PRIVATE.shortest_span(self.busiest),
        }


def _interleave(private: list[int], staff: list[int]) -> list[Send]:
    """The staff posts spread evenly among the private messages, numbered in queue order."""
    every = (len(private) + len(staff)) / max(len(staff), 1)
    order: list[tuple[float, bool, int]] = [(n, False, chat) for n, chat in enumerate(private)]
    order += [(n * every, True, contact) for n, contact in enumerate(staff)]
    order.sort()
    return [Send(n, chat, is_staff) for n, (_, is_staff, chat) in enumerate(order)]


# --- the outbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    chat_id: int
    contact_id: int
    conversation_id: int


async def create_chats(db: Database, count: int, first_chat_id: int) -> list[Chat]:
    """One contact and Telegram conversation per private chat."""
    async with db.transaction() as session:
        pairs = []
        for n in range(count):
            contact = Contact(name=f"Customer {n}")
            session.add(contact)
            await session.flush()
            conversation = Conversation(contact_id=contact.id, channel=CHANNEL)
            session.add(conversation)
            pairs.append((contact, conversation))
        await session.flush()
        return [
            Chat(first_chat_id + n, contact.id, conversation.id)
            for n, (contact, conversation) in enumerate(pairs)
        ]


async def queue_all(db: Database, workload: Workload, chats: list[Chat], prefix: str) -> None:
    """Queue every send at once, as a backlog, in the workload's order."""
    async with db.transaction() as session:
        for send in workload.sends:
            chat, key = chats[send.chat], f"{prefix}:{send.number}"
            text = f"sending {send.number}: thanks, we will be in touch"
            if send.staff:
                await notify_staff(
                    session,
                    key=key,
                    conversation_id=chat.conversation_id,
                    contact_id=chat.contact_id,
                    text=text,
                    kind="summary",
                )
                continue
            await outbox.enqueue(
                session,
                key=key,
                conversation_id=chat.conversation_id,
                contact_id=chat.contact_id,
                channel=CHANNEL,
                recipient=str(chat.chat_id),
                text=text,
            )


async def statuses(db: Database, prefix: str) -> dict[int, tuple[str, int]]:
    """Each bench item's outbox status and attempts, by number."""
    query = select(OutboxItem.idempotency_key, OutboxItem.status, OutboxItem.attempts).where(
        OutboxItem.idempotency_key.like(f"{prefix}:%")
    )
    async with db.transaction() as session:
        rows = (await session.execute(query)).all()
    return {int(key.split(":", 1)[1]): (status, attempts) for key, status, attempts in rows}


async def wait_settled(db: Database, prefix: str, count: int, time_limit: float) -> bool:
    """Poll until every item is sent, failed or unknown; False at the time limit."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        found = await statuses(db, prefix)
        if len(found) == count and not {"pending", "sending"} & {s for s, _ in found.values()}:
            return True
        await asyncio.sleep(0.25)
    return False


@contextlib.asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """A database of the run's own: on a PostgreSQL server, a new one dropped afterwards, so
    that nobody else's unsent outbox items go out with ours (and no test suite resets ours)."""
    parsed = make_url(url)
    host = parsed.host
    if host not in (None, "", "localhost") and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"--database-url must be on 127.0.0.1, not {host}")
    if not parsed.drivername.startswith("postgresql"):
        yield url
        return
    name = f"bench_sending_{uuid.uuid4().hex[:8]}"
    server = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        async with server.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await server.dispose()


# --- watching crmbot (notes times only; changes nothing) -----------------------------------------


@dataclass(frozen=True)
class Pass:
    """One outbox worker pass over the due heads."""

    channel: str
    started: float
    ended: float
    handed: int
    """Items handed to the channel (slot granted, claimed, sent)."""
    soonest: float | None
    """The shortest wait Pacing gave the items it held back in this pass; None if none."""


@dataclass
class Trace:
    """When crmbot's pacing granted each bench item a slot, and when each worker pass ran."""

    prefix: str
    """The idempotency keys of bench items start with it (staff alerts do not)."""
    granted: dict[int, list[float]] = field(default_factory=dict)
    delivering: dict[int, list[float]] = field(default_factory=dict)
    """When `channel.deliver` began for each bench item: after its claim, before its request."""
    passes: list[Pass] = field(default_factory=list)

    def number(self, item: OutboxItem) -> int | None:
        prefix, _, number = item.idempotency_key.partition(":")
        return int(number) if prefix == self.prefix else None

    def note(self, times: dict[int, list[float]], item: OutboxItem) -> None:
        number = self.number(item)
        if number is not None:
            times.setdefault(number, []).append(time.monotonic())

    def watch(self, worker: OutboxWorker) -> None:
        channel, deliver_due = worker.channel, worker.deliver_due
        pace, deliver = channel.pace, channel.deliver
        held: list[float] = []  # a worker's passes never overlap

        async def traced_pace(item: OutboxItem) -> float | None:
            wait = await pace(item)
            if wait is not None:
                held.append(wait)
            else:
                self.note(self.granted, item)
            return wait

        async def traced_deliver(item: OutboxItem) -> DeliveryResult:
            self.note(self.delivering, item)
            return await deliver(item)

        async def traced_pass() -> int:
            held.clear()
            started = time.monotonic()
            handed = await deliver_due()
            ended, soonest = time.monotonic(), min(held, default=None)
            self.passes.append(Pass(channel.name, started, ended, handed, soonest))
            return handed

        channel.pace = traced_pace  # type: ignore[method-assign]
        channel.deliver = traced_deliver  # type: ignore[method-assign]
        worker.deliver_due = traced_pass  # type: ignore[method-assign]


# --- crmbot --------------------------------------------------------------------------------------


def crmbot_settings(fake: FakeTelegram, database_url: str) -> Settings:
    """crmbot's defaults, plus only what it needs to reach the fake and the database."""
    return Settings(
        _env_file=None,  # a developer's .env must not change the limits under test
        database_url=database_url,
        llm_provider="offline",
        telegram_bot_token=fake.token,
        telegram_base_url=fake.base_url,
        telegram_staff_chat_id=STAFF_CHAT,
    )


@dataclass
class Outcome:
    """What the run left: the server's calls, the outbox, the trace, and how long it took."""

    settled: bool
    queued: float
    """Seconds it took to queue the workload (before any send)."""
    seconds: float
    found: dict[int, tuple[str, int]]
    calls: list[Call]
    rejections: list[Rejection]
    trace: Trace


async def deliver(
    fake: LimitedTelegram, settings: Settings, workload: Workload, time_limit: float
) -> Outcome:
    """Queue the workload, run crmbot's outbox workers until it has settled, stop cleanly."""
    app = App(settings, seed_agents=False)
    service = TelegramService(app, settings)
    prefix = f"sending-{uuid.uuid4().hex[:8]}"
    trace = Trace(prefix)
    for worker in app.outbox_workers.values():
        trace.watch(worker)
    await app.start()
    first_chat_id = 10**9 + random.Random(prefix).randrange(10**8)  # unique on a shared database
    queueing = time.monotonic()
    chats = await create_chats(app.db, workload.chats, first_chat_id)
    await queue_all(app.db, workload, chats, prefix)
    queued = time.monotonic() - queueing
    await service.start()
    fake.calls.clear()  # start-up calls (setMyCommands, deleteWebhook) are no sends
    started = time.monotonic()
    task = asyncio.create_task(serve(app, []))
    try:
        settled = await wait_settled(app.db, prefix, len(workload.sends), time_limit)
        seconds = time.monotonic() - started
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        found = await statuses(app.db, prefix)
        await app.aclose()
        await service.stop()
    return Outcome(settled, queued, seconds, found, list(fake.calls), list(fake.rejections), trace)


# --- the figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """A send the server acted on."""

    number: int
    chat_id: int
    at: float


def accepted(calls: list[Call]) -> list[Accepted]:
    found = []
    for call in calls:
        number = bench_number(str(call.params.get("text", "")))
        if call.method.lower() in SEND_METHODS and call.status == 200 and number is not None:
            found.append(Accepted(number, as_int(call.params["chat_id"]) or 0, call.at))
    return found


@dataclass(frozen=True)
class Rate:
    """Sends over their span at the server, against the shortest span the limits allow."""

    sends: int
    span: float
    shortest: float

    @property
    def rate(self) -> float:
        return (self.sends - 1) / self.span if self.span > 0 else math.nan

    @property
    def limit(self) -> float:
        return (self.sends - 1) / self.shortest if self.shortest > 0 else math.nan

    @property
    def share(self) -> float:
        return self.shortest / self.span if self.span > 0 and self.shortest > 0 else math.nan


def measure(sends: list[Accepted], shortest: float) -> Rate:
    times = [send.at for send in sends]
    return Rate(len(sends), max(times) - min(times) if times else 0.0, shortest)


def rates_of(workload: Workload, sends: list[Accepted]) -> dict[str, Rate]:
    """The whole mix, the private chats and the group, each against its own shortest span."""
    private = [send for send in sends if send.chat_id > 0]
    private_bound = max(
        OVERALL.shortest_span(len(private)), PRIVATE.shortest_span(workload.busiest)
    )
    return {
        "all": measure(sends, max(workload.bounds().values())),
        "private": measure(private, private_bound),
        "group": measure(
            [send for send in sends if send.chat_id < 0],
            GROUP.shortest_span(workload.group_messages),
        ),
    }


def exactly_once(workload: Workload, outcome: Outcome, sends: list[Accepted]) -> int:
    """Items the server acted on exactly once and the outbox holds as sent."""
    counts = Counter(send.number for send in sends)
    return sum(
        counts[n] == 1 and outcome.found.get(n, ("", 0))[0] == "sent"
        for n in range(len(workload.sends))
    )


def count_in(times: list[float], start: float, end: float) -> int:
    """How many of the sorted `times` fall in (start, end]."""
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, start)


def peak(times: list[float], seconds: float) -> int:
    """The most of `times` in any window of `seconds`."""
    ordered = sorted(times)
    return max((count_in(ordered, at - seconds, at) for at in ordered), default=0)


def closest_gap(sends: list[Accepted]) -> float:
    """The shortest time between two sends to the same private chat."""
    by_chat: dict[int, list[float]] = {}
    for send in sends:
        if send.chat_id > 0:
            by_chat.setdefault(send.chat_id, []).append(send.at)
    gaps = [b - a for times in by_chat.values() for a, b in itertools.pairwise(times)]
    return min(gaps, default=math.nan)


# --- printing ------------------------------------------------------------------------------------


def print_workload(workload: Workload, settings: Settings, backend: str) -> None:
    print(
        f"{backend}: {workload.messages} messages queued at once (seed {workload.seed}): "
        f"{workload.messages - workload.group_messages} to {workload.chats} private chats "
        f"(bursts of {sorted(set(BURSTS))}, busiest chat {workload.busiest}), "
        f"{workload.group_messages} staff posts in {workload.topics} topics of one supergroup"
    )
    print(
        f"crmbot defaults: TELEGRAM_MAX_MESSAGES_PER_SECOND="
        f"{settings.telegram_max_messages_per_second:g}; server limits: "
        f"{', '.join(limit.name for limit in (OVERALL, PRIVATE, GROUP))} (sliding windows)"
    )
    bounds = workload.bounds()
    binding = max(bounds, key=lambda name: bounds[name])
    spans = ", ".join(f"{name} {span:.0f} s" for name, span in bounds.items())
    print(f"limit: the shortest span each limit allows: {spans}; the binding one: {binding}")


def print_rates(rates: dict[str, Rate]) -> None:
    for case, rate in rates.items():
        unit, scale = ("msg/min", 60) if case == "group" else ("msg/s", 1)  # as the limits read
        if math.isnan(rate.share):
            print(f"{case}: {rate.sends} sends over {rate.span:.1f} s; no limit binds its span")
            continue
        print(
            f"{case}: {rate.sends} sends over {rate.span:.1f} s = {rate.rate * scale:.2f} {unit}; "
            f"limit {rate.limit * scale:.2f} {unit} (span >= {rate.shortest:.0f} s): "
            f"{rate.share:.0%} of the limit"
        )


def print_delivery(workload: Workload, outcome: Outcome, sends: list[Accepted]) -> None:
    counts = Counter(send.number for send in sends)
    total = len(workload.sends)
    attempts = Counter(a for _, a in outcome.found.values())
    print(
        f"delivered exactly once: {exactly_once(workload, outcome, sends)}/{total} (twice or more: "
        f"{sum(c > 1 for c in counts.values())}, never: {total - len(counts)}); outbox: "
        f"{dict(Counter(s for s, _ in outcome.found.values()))}; attempts per item: "
        f"{dict(sorted(attempts.items()))}"
    )
    if not outcome.settled:
        print("NOT SETTLED within the time limit: the figures are a snapshot")
    print(
        f"total time: {outcome.seconds:.1f} s from starting the workers to all settled "
        f"(queueing the backlog before that: {outcome.queued:.1f} s)"
    )


def print_server(outcome: Outcome, sends: list[Accepted], start: float) -> None:
    by_limit = Counter(rejection.limit.name for rejection in outcome.rejections)
    print(f"HTTP 429 answered: {len(outcome.rejections)} {dict(by_limit) or ''}".rstrip())
    group = [send.at for send in sends if send.chat_id < 0]
    print(
        f"at the server: most sends in any 1 s {peak([s.at for s in sends], 1.0)} (limit 30), "
        f"most group posts in any 60 s {peak(group, 60.0)} (limit 20), closest two sends to "
        f"one private chat {closest_gap(sends) * 1000:.0f} ms apart (limit 1000)"
    )
    tens = Counter(int((send.at - start) // 10) for send in sends)
    print(f"sends per 10 s at the server: {[tens[n] for n in range(max(tens, default=-1) + 1)]}")


def print_why(outcome: Outcome, sends: list[Accepted], start: float) -> None:
    """Evidence for the 429s and the shortfall, from the trace of crmbot's pacing."""
    print("why (the trace of crmbot's Pacing and outbox passes, times from the first send):")
    print_slot_to_server(outcome)
    print_overall_429s(outcome)
    print_private_429s(outcome, sends, start)
    print_group_429s(outcome, start)
    print_chains(sends)
    print_idle_passes(outcome)


def arrivals(outcome: Outcome) -> dict[int, list[float]]:
    """Each bench item's send requests (any answer) as they reached the server."""
    found: dict[int, list[float]] = {}
    for call in outcome.calls:
        number = bench_number(str(call.params.get("text", "")))
        if call.method.lower() in SEND_METHODS and number is not None:
            found.setdefault(number, []).append(call.at)
    return found


def delays(earlier: dict[int, list[float]], later: dict[int, list[float]]) -> list[float]:
    """Per item, from each of its `earlier` moments to the matching `later` one, sorted."""
    return sorted(
        b - a
        for number, times in earlier.items()
        for a, b in zip(times, later.get(number, []), strict=False)
    )


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=100)
    return (
        f"p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
        f"max {values[-1] * 1000:.0f} ms"
    )


def print_slot_to_server(outcome: Outcome) -> None:
    trace, reached = outcome.trace, arrivals(outcome)
    print(f"  slot granted -> request at the server: {quantiles(delays(trace.granted, reached))}")
    print(
        f"    of which slot -> deliver() called (connection semaphore, one-at-a-time claim, "
        f"its transaction): {quantiles(delays(trace.granted, trace.delivering))}"
    )
    print(
        f"    and deliver() -> request at the server (python-telegram-bot, HTTP; staff: topic "
        f"lookup): {quantiles(delays(trace.delivering, reached))}"
    )
    grants = [at for times in trace.granted.values() for at in times]
    print(
        f"  slots Pacing granted: most in any 1 s {peak(grants, 1.0)} (server limit 30), "
        f"in any 60 s to the group {peak(group_grants(outcome), 60.0)} (server limit 20)"
    )


def group_grants(outcome: Outcome) -> list[float]:
    """Slots Pacing granted to group posts (items whose requests went to a negative chat)."""
    group_numbers = {
        bench_number(str(call.params.get("text", "")))
        for call in outcome.calls
        if (as_int(call.params.get("chat_id")) or 0) < 0
    }
    return sorted(
        at
        for number, times in outcome.trace.granted.items()
        if number in group_numbers
        for at in times
    )


def print_overall_429s(outcome: Outcome) -> None:
    overall = [r for r in outcome.rejections if r.limit is OVERALL]
    if not overall:
        return
    grants = sorted(at for times in outcome.trace.granted.values() for at in times)
    before = [count_in(grants, r.at - 1.0, r.at) for r in overall]
    print(
        f"  {len(overall)} overall 429s: Pacing had granted over 30 slots in the second before "
        f"{sum(n > 30 for n in before)} of them (its own burst) and at most 30 before the other "
        f"{sum(n <= 30 for n in before)} (sends bunched between slot and request); slots in "
        f"that second: median {statistics.median(before):.0f}, most {max(before)}"
    )


def print_private_429s(
    outcome: Outcome, sends: list[Accepted], start: float, examples: int = 3
) -> None:
    private = [r for r in outcome.rejections if r.limit is PRIVATE and r.number is not None]
    if not private:
        return
    by_chat: dict[int, list[Accepted]] = {}
    for send in sends:
        by_chat.setdefault(send.chat_id, []).append(send)
    print(f"  {len(private)} private-chat 429s, e.g.:")
    for rejection in private[:examples]:
        previous = [s for s in by_chat.get(rejection.chat_id, []) if s.at < rejection.at][-1]
        print("    " + private_example(outcome, rejection, previous, start))


def private_example(
    outcome: Outcome, rejection: Rejection, previous: Accepted, start: float
) -> str:
    grants = outcome.trace.granted
    assert rejection.number is not None
    slot = next((g for g in reversed(grants.get(rejection.number, [])) if g <= rejection.at), None)
    prior_slot = max((g for g in grants.get(previous.number, []) if g <= previous.at), default=None)
    slots = (
        f"their slots at {prior_slot - start:.3f} s and {slot - start:.3f} s "
        f"({slot - prior_slot:.3f} s apart)"
        if slot is not None and prior_slot is not None
        else "slots not traced"
    )
    return (
        f"chat {rejection.chat_id}: item {previous.number} reached the server at "
        f"{previous.at - start:.3f} s, item {rejection.number} at {rejection.at - start:.3f} s "
        f"({rejection.at - previous.at:.3f} s later); {slots}"
    )


def print_group_429s(outcome: Outcome, start: float) -> None:
    group = [r for r in outcome.rejections if r.limit is GROUP]
    if not group:
        return
    grants = group_grants(outcome)
    first = group[0]
    print(
        f"  {len(group)} group 429s; the first at {first.at - start:.1f} s (retry after "
        f"{first.retry_after} s) with 20 posts accepted since {first.window[0] - start:.1f} s; "
        f"Pacing granted {count_in(grants, first.at - 60.0, first.at)} group slots in the 60 s "
        f"before it; group 429s at {[round(r.at - start) for r in group]} s"
    )


def print_chains(sends: list[Accepted]) -> None:
    """How fast each private chat's queue moved: all its messages were queued at the start."""
    by_chat: dict[int, list[float]] = {}
    for send in sends:
        if send.chat_id > 0:
            by_chat.setdefault(send.chat_id, []).append(send.at)
    if not by_chat:
        return
    gaps = sorted(b - a for times in by_chat.values() for a, b in itertools.pairwise(times))
    busiest = max(by_chat.values(), key=len)
    steps = [b - a for a, b in itertools.pairwise(busiest)]
    print(
        f"  one private chat's consecutive sends: median {statistics.median(gaps or [0]):.2f} s "
        f"apart (limit 1 s); the busiest chat's {len(busiest)} sends took "
        f"{busiest[-1] - busiest[0]:.1f} s (>= {len(busiest) - 1} s), median step "
        f"{statistics.median(steps or [0]):.2f} s, longest {max(steps, default=0):.1f} s"
    )


def print_idle_passes(outcome: Outcome) -> None:
    """Worker time lost between passes: after a pass that handed nothing, the worker sleeps
    its poll interval, though Pacing may have held the items back for much less."""
    for channel in sorted({p.channel for p in outcome.trace.passes}):
        passes = [p for p in outcome.trace.passes if p.channel == channel]
        held = [(b.started - a.ended, a.soonest) for a, b in itertools.pairwise(passes)]
        held = [(gap, soonest) for gap, soonest in held if soonest is not None and gap > 0.1]
        lost = sum(max(gap - soonest, 0.0) for gap, soonest in held if soonest is not None)
        if not held:
            print(f"  {channel} worker: {len(passes)} passes; it never slept with items held back")
            continue
        print(
            f"  {channel} worker: {len(passes)} passes; after {len(held)} of them, where Pacing "
            f"had held every item back (the soonest for {soonest_range(held)}), it slept "
            f"{sum(gap for gap, _ in held):.1f} s, {lost:.1f} s of it past those holds"
        )


def soonest_range(held: list[tuple[float, float | None]]) -> str:
    waits = [soonest for _, soonest in held if soonest is not None]
    return f"{min(waits):.3f}-{max(waits):.3f} s" if waits else "-"


# --- results -------------------------------------------------------------------------------------


def records(
    rates: dict[str, Rate], outcome: Outcome, once: float, case: str, backend: str
) -> list[Record]:
    mixed = rates["all"]

    def record(metric: str, value: float, unit: str, target: str | None, of: str = case) -> Record:
        return Record(
            benchmark=BENCHMARK,
            case=of,
            metric=metric,
            value=value,
            unit=unit,
            target=target,
            backend=backend,
        )

    found = [
        record("rate", mixed.rate, "msg/s", f"within 10% of {mixed.limit:.2f}"),
        record("rate_vs_limit", mixed.share, "", ">= 0.9"),
        record("http_429", len(outcome.rejections), "count", "0"),
        record("delivered_once", once, "", "1"),
        record("total_time", outcome.seconds, "s", None),
    ]
    for part in ("private", "group"):
        if not math.isnan(rates[part].share):
            found.append(record("rate_vs_limit", rates[part].share, "", ">= 0.9", f"{case} {part}"))
    return found


async def main(
    workload: Workload, database_url: str, time_limit: float, json_path: str | None
) -> int:
    logging.disable(logging.WARNING)  # 429s are expected chatter here; the figures say it all
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    fake = LimitedTelegram()
    async with fake, scratch_database(database_url) as url:
        fake.add_supergroup(STAFF_CHAT, "Staff")
        settings = crmbot_settings(fake, url)
        print_workload(workload, settings, backend)
        outcome = await deliver(fake, settings, workload, time_limit)
    sends = accepted(outcome.calls)
    start = min((send.at for send in sends), default=0.0)
    rates = rates_of(workload, sends)
    print_rates(rates)
    print_server(outcome, sends, start)
    print_delivery(workload, outcome, sends)
    print_why(outcome, sends, start)
    case = f"{workload.messages} msgs, {workload.chats} chats, {workload.group_messages} group"
    once = exactly_once(workload, outcome, sends) / len(workload.sends)
    write_results(json_path, records(rates, outcome, once, case, backend))
    return 0 if outcome.settled else 1


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 messages, 60 chats, 20 posts")
    parser.add_argument("--messages", type=int, default=None, help="default 3000")
    parser.add_argument("--chats", type=int, default=None, help="private chats; default 300")
    parser.add_argument("--group-messages", type=int, default=None, help="default 60")
    parser.add_argument("--topics", type=int, default=6, help="staff topics the posts go to")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=600)
    parser.add_argument(
        "--database-url",
        default=None,
        help="default: SQLite in a temp dir; on a PostgreSQL server, a scratch database is used",
    )
    parser.add_argument("--json", default=None, help="write result records here")
    return parser.parse_args()


def workload_of(args: argparse.Namespace) -> Workload:
    defaults = QUICK if args.quick else FULL
    messages = args.messages or defaults["messages"]
    chats = args.chats or defaults["chats"]
    group = args.group_messages
    return Workload(
        messages=messages,
        chats=chats,
        group_messages=min(defaults["group_messages"] if group is None else group, messages),
        topics=max(1, min(args.topics, chats)),
        seed=args.seed,
    )


if __name__ == "__main__":
    arguments = parse()
    with tempfile.TemporaryDirectory(prefix="sending-") as tmp:
        url = arguments.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'sending.db'}"
        code = asyncio.run(main(workload_of(arguments), url, arguments.time_limit, arguments.json))
    raise SystemExit(code)
