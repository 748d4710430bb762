"""Exactly once across crashes, on both channels: SIGKILL a real `crmbot run`, count.

The bot is `crmbot run` as a real process (`bench.bot_process`) with the offline provider (no
key) and one agent imported for the run, `crash-bench`. The agent answers every message (each
asks "who are you?", which the offline provider always answers), its `every: 1m` schedule
checks in with every contact, so proactive jobs fire throughout, and an event posted to
`POST /events` (EVENTS_PORT) for each contact after its second message wakes it to send that
contact one message more (posted again until accepted, as a client would while the bot is
down: the event's id makes a repeat a no-op). Its channels, all on 127.0.0.1: the fake
Telegram Bot API (long-polled by python-telegram-bot, with a seeded latency on every
sendMessage answer, given after the server has acted, as Telegram does), and email against a
real Dovecot (read with IDLE) and aiosmtpd.

The load: --messages inbound messages from --contacts contacts, half on Telegram and half by
email (one mail thread each), in a seeded order, given to the servers at --rate a second
whether the bot is up or not. The kills: SIGKILL at --kills seeded moments (each when the
servers have received a seeded number of messages from the bot, plus a jitter of up to half
a second), and a new process (a new WORKER_ID) started at once each time. Once every message
is recorded and answered, nothing is queued and no wake-up is due, the bot is stopped with
SIGTERM and everything is counted (`bench.crash_figures`) from the servers' side and from the
store's: inbound recorded, runs, replies sent, lost, duplicated, and the ambiguous window
(`unknown` outbox items: sends cut between the request leaving and the answer arriving, per
1,000 sends) with its policy checked: staff alerted, never resent, "[delivery uncertain]" in
the agent's history.

Usage:

    python -m bench.crash [--messages 1000] [--contacts 100] [--kills 10] [--seed N]
        [--rate 8] [--latency-ms 20-150] [--lease-seconds 3] [--time-limit 1800]
        [--linger 0] [--database-url URL] [--json FILE] [--quick] [--keep DIR]

With --database-url (PostgreSQL on 127.0.0.1), a scratch database is created beside the one
named and dropped afterwards. --quick: 100 messages from 10 contacts, 3 kills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import distinct, func, select
from sqlalchemy.engine import make_url

from bench.bot_process import (
    CRMBOT,
    BotProcess,
    add_latency,
    clean_environment,
    loopback_only,
    parse_latency,
)
from bench.concurrency import scratch_database
from bench.crash_figures import (
    CHECK_IN,
    PING,
    PING_EVENT,
    Customer,
    Delivered,
    Figures,
    Inbound,
    count,
    email_deliveries,
    read_store,
    staff_refs,
    telegram_deliveries,
)
from bench.results_io import Collector, write_results
from bot.store.db import Database
from bot.store.models import Message, OutboxItem, Wakeup
from bot.store.types import utcnow
from tests.support.fake_telegram import FakeTelegram
from tests.support.mail_servers import (
    OUR_ADDRESS,
    Dovecot,
    MailUser,
    SmtpSink,
    free_port,
    make_mail,
)
from tests.support.telegram_rig import ALWAYS_OPEN

STAFF_CHAT = -1001234567890
AGENT = "crash-bench"
EVENTS_SECRET = "crash-bench-events-secret"
PING_AFTER = 2
"""Each contact's event is posted once this many of its messages were given (it must be a
contact by then, or the API answers 404 and the harness tries again)."""
AGENT_YAML = f"""\
name: {AGENT}
description: Answers every message and checks in with every contact each minute (bench.crash).
goal: Answer each message the contact writes with one short reply.
persona: A brief, friendly assistant.
tools: [send_message]
handoff_triggers: []
triggers:
  - type: inbound
  - type: schedule
    every: 1m
    for_each: contact
    message: "Hi {{first_name}}, {CHECK_IN}: anything we can help with?"
  - type: event
    event: {PING_EVENT}
    message: "Hi {{first_name}}, {PING}!"
"""


@dataclass
class Workload:
    """One crash run's configuration."""

    messages: int = 1000
    contacts: int = 100
    kills: int = 10
    seed: int = 1
    rate: float = 8.0
    """Inbound messages given to the servers a second."""
    latency: tuple[float, float] = (0.02, 0.15)
    """Seconds the fake Bot API holds each sendMessage answer back, after acting on it."""
    lease_seconds: float = 3.0
    kill_within: float = 0.7
    """Kill moments are drawn from the first 70% of the messages the bot is expected to send
    (one per inbound message), so each is reached however many messages were answered
    together."""
    time_limit: float = 1800.0
    stall_seconds: float = 150.0
    """Once everything is given, the run ends as stalled when no message has been recorded or
    answered for this long and it has not settled."""
    linger: float = 0.0
    """Seconds the last process keeps running once the run has settled, before the count:
    long enough (over 600 s) and the wake-ups a killed worker had claimed are taken over
    and run too, as they are after their claim (`scheduler.wakeups.CLAIM_SECONDS`) lapses."""
    due_soon: float = 65.0
    """The run settles only when no wake-up is due within this many seconds: a wake-up that
    finds its conversation leased by a killed worker is postponed by a minute."""


@dataclass
class Outcome:
    """What a crash run measured."""

    workload: Workload
    backend: str
    figures: Figures
    kills: int
    starts: int
    ending: str
    """settled; stalled (something given was never answered); or timed out."""
    seconds: float
    tracebacks: list[str] = field(default_factory=list)
    """The exception line of each traceback in the bot's logs."""

    @property
    def settled(self) -> bool:
        return self.ending == "settled"


@dataclass
class Servers:
    fake: FakeTelegram
    dovecot: Dovecot
    mailbox: MailUser
    smtp: SmtpSink
    events_port: int = field(default_factory=free_port)


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[Servers]:
    """The fake Bot API (with its staff group), Dovecot and aiosmtpd, on 127.0.0.1."""
    if not Dovecot.available():
        raise SystemExit("dovecot is not installed (`make system-deps` installs dovecot-imapd)")
    dovecot, smtp = Dovecot(), SmtpSink()
    dovecot.start()
    smtp.start()
    try:
        async with FakeTelegram() as fake:
            fake.add_supergroup(STAFF_CHAT, "Staff")
            yield Servers(fake, dovecot, dovecot.new_user(), smtp)
    finally:
        smtp.stop()
        dovecot.stop()


def environment(found: Servers, database_url: str, workload: Workload) -> dict[str, str]:
    """What `crmbot run` needs for both channels, and limits that would hide a duplicate.

    The proactive caps and the email auto-reply cap are lifted: they would cancel a second
    check-in or reply instead of letting it show; quiet hours are off so check-ins go now.
    """
    return clean_environment() | {
        "DATABASE_URL": database_url,
        "LLM_PROVIDER": "offline",
        "DEFAULT_AGENT": AGENT,
        "TELEGRAM_BOT_TOKEN": found.fake.token,
        "TELEGRAM_BASE_URL": found.fake.base_url,
        "TELEGRAM_STAFF_CHAT_ID": str(STAFF_CHAT),
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(found.dovecot.port),
        "IMAP_TLS": "none",
        "IMAP_USER": found.mailbox.name,
        "IMAP_PASSWORD": found.mailbox.password,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(found.smtp.port),
        "SMTP_TLS": "none",
        "EMAIL_FROM": OUR_ADDRESS,
        "EMAIL_FROM_NAME": "Acme Sales",
        "EMAIL_AUTOREPLY_CAP_PER_HOUR": "1000",
        "COALESCE_SECONDS": "0.2",
        "BUSINESS_HOURS": ALWAYS_OPEN,
        "QUIET_HOURS": "none",
        "PROACTIVE_MAX_PER_WEEK": "1000",
        "PROACTIVE_DAILY_LIMIT": "100000",
        "SCHEDULER_TICK_SECONDS": "1",
        "EVENTS_PORT": str(found.events_port),
        "EVENTS_SECRET": EVENTS_SECRET,
        "LEASE_SECONDS": f"{workload.lease_seconds:g}",
        "LOG_LEVEL": "WARNING",
    }


async def import_agent(env: dict[str, str], workdir: Path) -> None:
    (workdir / f"{AGENT}.yaml").write_text(AGENT_YAML)
    imported = await asyncio.create_subprocess_exec(
        CRMBOT, "agent", "import", f"{AGENT}.yaml", env=env, cwd=workdir,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, error = await imported.communicate()
    if imported.returncode != 0:
        raise RuntimeError(f"crmbot agent import failed: {error.decode()[-2000:]}")


# --- the load ---------------------------------------------------------------------------------


def plan(workload: Workload, rng: random.Random) -> list[Inbound]:
    """Every contact's messages, in a seeded order that keeps each contact's own order (and
    so has bursts, which are answered together)."""
    customers = [Customer(n) for n in range(workload.contacts)]
    order = [customers[k % workload.contacts] for k in range(workload.messages)]
    rng.shuffle(order)
    seqs: dict[Customer, int] = {}
    inbound = []
    for customer in order:
        seq = seqs[customer] = seqs.get(customer, -1) + 1
        text = f"Who are you? This is {customer.first_name}, message {seq + 1}."
        inbound.append(Inbound(customer, seq, text))
    return inbound


def mail_id(message: Inbound) -> str:
    return f"<crash-{message.customer.number:03d}-{message.seq:03d}@prospect.test>"


async def give(found: Servers, message: Inbound) -> None:
    """Hand one message to its server: a Telegram update, or a mail in the bot's mailbox."""
    customer = message.customer
    if customer.channel == "telegram":
        update = found.fake.user_message(
            customer.user_id, message.text, first_name=customer.first_name
        )
        message.position = int(update["message"]["message_id"])
        message.external_id = f"{customer.user_id}:{message.position}"
        return
    message.external_id = mail_id(message)
    earlier = [f"<crash-{customer.number:03d}-{n:03d}@prospect.test>" for n in range(message.seq)]
    raw = make_mail(
        message.text,
        sender=f"{customer.first_name} Lee <{customer.email}>",
        subject=f"Question from {customer.first_name}",
        message_id=message.external_id,
        in_reply_to=earlier[-1] if earlier else None,
        references=" ".join(earlier[-10:]) or None,
    )
    await asyncio.to_thread(found.dovecot.deliver, found.mailbox, raw)


async def feed(found: Servers, inbound: list[Inbound], rate: float, posts: Counter[str]) -> None:
    """Give the messages at `rate` a second, on a fixed timetable (a slow delivery is made up
    for by the next ones, and the bot being down changes nothing), and each contact's event
    after its first messages; return once every event is accepted."""
    started = time.monotonic()
    pings: list[asyncio.Task[None]] = []
    for n, message in enumerate(inbound):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await give(found, message)
        if message.seq == PING_AFTER - 1:
            pings.append(asyncio.create_task(ping(found.events_port, message.customer, posts)))
    await asyncio.gather(*pings)


async def ping(port: int, customer: Customer, posts: Counter[str]) -> None:
    """POST the contact's event until it is accepted, as a billing system would: a kill that
    cut the first answer off makes the second a repeat of the same id (answered 200)."""
    ref = (
        {"telegram_id": customer.user_id}
        if customer.channel == "telegram"
        else {"email": customer.email}
    )
    body = {"contact": ref, "type": PING_EVENT, "id": f"ping-{customer.number}"}
    headers = {"Authorization": f"Bearer {EVENTS_SECRET}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/events", json=body, headers=headers
                ) as answer:
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            posts[str(status)] += 1
            if status in (200, 202):
                return
            await asyncio.sleep(0.5)


# --- the kills --------------------------------------------------------------------------------


def bot_messages(found: Servers) -> int:
    """Messages the servers have received from the bot for customers (not staff posts)."""
    telegram = sum(
        1
        for call in found.fake.calls
        if call.method.lower() == "sendmessage"
        and call.status == 200
        and str(call.params.get("chat_id")) != str(STAFF_CHAT)
    )
    return telegram + len(found.smtp.received)


@dataclass(frozen=True)
class Progress:
    """The store's state, polled while the run drains (the bot is another process)."""

    recorded: int
    unanswered: int
    queued: int
    due: int
    replies_sent: int

    def settled(self, expected: int) -> bool:
        """Everything given is recorded and answered, nothing is queued, no wake-up is due."""
        return self.recorded == expected and self.unanswered == self.queued == self.due == 0

    def left(self, expected: int) -> str:
        """What stands between this state and settled, for a stalled run's report."""
        return (
            f"{expected - self.recorded} not recorded, {self.unanswered} unanswered, "
            f"{self.queued} queued, {self.due} wake-ups due"
        )

    @property
    def answering(self) -> tuple[int, int, int]:
        """What moves while messages are still being answered (check-ins move every minute
        regardless, so they are left out)."""
        return (self.recorded, self.unanswered, self.replies_sent)


async def progress(db: Database, due_soon: float) -> Progress:
    async with db.reading() as session:
        recorded = await session.scalar(
            select(func.count(distinct(Message.external_id))).where(Message.direction == "in")
        )
        unanswered = await session.scalar(
            select(func.count(Message.id)).where(
                Message.direction == "in", Message.handled_at.is_(None)
            )
        )
        queued = await session.scalar(
            select(func.count(OutboxItem.id)).where(OutboxItem.status.in_(("pending", "sending")))
        )
        due = await session.scalar(
            select(func.count(Wakeup.id)).where(
                Wakeup.status == "pending",
                Wakeup.due_at <= utcnow() + timedelta(seconds=due_soon),
            )
        )
        replies = await session.scalar(
            select(func.count(OutboxItem.id)).where(
                OutboxItem.status == "sent", OutboxItem.automatic.is_(False)
            )
        )
    return Progress(recorded or 0, unanswered or 0, queued or 0, due or 0, replies or 0)


async def reach(
    found: Servers, threshold: int, bot: BotProcess, db: Database, done: asyncio.Future[Progress]
) -> bool:
    """Wait until the servers have `threshold` messages from the bot; False if the run
    settled first."""
    polls = 0
    while bot_messages(found) < threshold:
        bot.check_running()
        polls += 1
        if polls % 40 == 0 and done.done():
            return False
        await asyncio.sleep(0.05)
    return True


async def crash_and_restart(
    found: Servers,
    bot: BotProcess,
    db: Database,
    workload: Workload,
    rng: random.Random,
    inbound: list[Inbound],
    feeder: asyncio.Task[None],
) -> Progress:
    """Kill at each seeded moment and restart at once; then wait for the run to settle or
    stall. The store's state at the end: settled, or what was left when it stalled."""
    top = max(int(workload.messages * workload.kill_within), workload.kills + 1)
    thresholds = sorted(rng.sample(range(1, top), workload.kills))
    jitters = [rng.uniform(0, 0.5) for _ in thresholds]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Progress] = loop.create_future()

    async def watch() -> None:
        """Settled, or stalled: nothing answered for `stall_seconds` while something given is
        still missing, so it will never settle."""
        last, since = None, loop.time()
        while True:  # polled: the state is in another process
            if feeder.done():
                now = await progress(db, workload.due_soon)
                if now.settled(len(inbound)):
                    return done.set_result(now)
                if now.answering != last:
                    last, since = now.answering, loop.time()
                elif loop.time() - since > workload.stall_seconds:
                    return done.set_result(now)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    await bot.start()
    try:
        for threshold, jitter in zip(thresholds, jitters, strict=True):
            if not await reach(found, threshold, bot, db, done):
                break
            await asyncio.sleep(jitter)
            await bot.kill_and_restart()
        while not done.done():
            bot.check_running()
            await asyncio.sleep(0.2)
        return done.result()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def linger(bot: BotProcess, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bot.check_running()
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


# --- one run ----------------------------------------------------------------------------------


async def run(workload: Workload, database_url: str, workdir: Path) -> Outcome:
    """One crash run on an empty (or freshly migrated) database; the bot is stopped after."""
    rng = random.Random(workload.seed)
    inbound = plan(workload, rng)
    started = time.monotonic()
    async with servers() as found:
        add_latency(found.fake, rng, workload.latency, 20 * workload.messages)
        env = environment(found, database_url, workload)
        await import_agent(env, workdir)
        bot = BotProcess(env, workdir)
        db = Database(database_url)
        posts: Counter[str] = Counter()
        feeder = asyncio.create_task(feed(found, inbound, workload.rate, posts))
        ending = "timed out"
        try:
            final = await asyncio.wait_for(
                crash_and_restart(found, bot, db, workload, rng, inbound, feeder),
                workload.time_limit,
            )
            if final.settled(len(inbound)):
                ending = "settled"
            else:
                ending = f"stalled with {final.left(len(inbound))}"
            await linger(bot, workload.linger)
        except TimeoutError:
            pass  # reported as not settled
        finally:
            await bot.stop()  # SIGTERM: the last process stops cleanly
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        try:
            figures = await figures_of(found, db, inbound)
        finally:
            await db.dispose()
        figures.event_posts = posts
    return Outcome(
        workload,
        make_url(database_url).get_backend_name(),
        figures,
        bot.kills,
        bot.starts,
        ending,
        time.monotonic() - started,
        tracebacks(bot.logs()),
    )


async def figures_of(found: Servers, db: Database, inbound: list[Inbound]) -> Figures:
    customers = sorted({m.customer for m in inbound}, key=lambda c: c.number)
    at_servers: dict[Customer, list[Delivered]] = {}
    for customer in customers:
        own = [m for m in inbound if m.customer == customer and m.external_id]
        at_servers[customer] = (
            telegram_deliveries(found.fake, customer, own)
            if customer.channel == "telegram"
            else email_deliveries(found.smtp, customer, own)
        )
    store = await read_store(db, customers)
    given = [m for m in inbound if m.external_id]  # a run stopped early gives fewer
    pinged = [m.customer for m in given if m.seq == PING_AFTER - 1]
    return count(store, given, at_servers, staff_refs(found.fake, STAFF_CHAT), pinged)


def tracebacks(logs: str) -> list[str]:
    """The last line of each traceback in the bot's logs (the exception itself)."""
    found, inside = [], False
    for line in logs.splitlines():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith((" ", "\t", "During", "The above")):
            found.append(line[:300])
            inside = False
    return found


# --- the report -------------------------------------------------------------------------------


def _listed(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counter.items()) if n) or "none"


def report(outcome: Outcome) -> None:
    w, f = outcome.workload, outcome.figures
    print(
        f"seed {w.seed}: {w.messages:,} inbound messages from {w.contacts} contacts (half "
        f"Telegram, half email) at {w.rate:g}/s; {outcome.kills} kills ({outcome.starts} "
        f"starts), LEASE_SECONDS={w.lease_seconds:g}, sendMessage latency "
        f"{w.latency[0] * 1000:.0f}-{w.latency[1] * 1000:.0f} ms, {outcome.backend}; "
        f"took {outcome.seconds:.0f} s"
    )
    if not outcome.settled:
        print(f"NOT SETTLED ({outcome.ending}): the figures below are a snapshot")
    print(f"inbound: given {f.inbound_given:,}, recorded {f.inbound_recorded:,}")
    print(f"runs: {_listed(f.runs)}; resumed after a kill: {f.runs_resumed}")
    if f.handoffs:
        print(f"runs handed off: {_listed(f.handoffs)}")
    print(f"replies sent, at the servers: {_listed(f.replies_at_servers)}")
    print(f"outbox items to customers, in the store: {_listed(f.items)}")
    print(
        f"proactive: job firings {_listed(f.firings)}; wake-ups {_listed(f.wakeups)}; runs "
        f"resumed by another wake-up than their own: {f.runs_adopted}"
    )
    print(
        f"events: POST /events answers {_listed(f.event_posts)}; stored {f.events_stored}; "
        f"each contact's ping message: {_listed(f.pings)}"
    )
    print(
        f"lost: {f.lost_at('servers')} at the servers, {f.lost_at('store')} in the store"
        + (f" ({_listed(f.lost)})" if any(f.lost.values()) else "")
    )
    print(
        f"duplicated: {f.duplicated_at('servers')} at the servers, "
        f"{f.duplicated_at('store')} in the store"
        + (f" ({_listed(f.duplicated)})" if any(f.duplicated.values()) else "")
    )
    if f.not_lost_but:
        print(f"answered otherwise: {_listed(f.not_lost_but)}")
    if f.contacts_mismatched:
        print("servers and store disagree: " + "; ".join(f.contacts_mismatched[:10]))
    reached = ", ".join(
        f"{channel} {n} (reached the server: {f.unknown_reached[channel]})"
        for channel, n in sorted(f.unknown.items())
    )
    print(
        f"ambiguous (unknown): {f.unknown_total} of {f.sends:,} sends = "
        f"{f.unknown_per_1000:.1f} per 1,000: {reached or 'none'}; unknown staff posts: "
        f"{f.unknown_staff_posts}"
    )
    print(
        f"policy for unknown items: staff alert received {f.alerted}/{f.unknown_total} (the "
        f"alert itself cut: {f.alert_unknown}), resent {f.resent}, shown to the agent as "
        f'"[delivery uncertain]" {f.marked}/{f.unknown_total}: '
        + ("held" if f.policy_held else "NOT HELD")
    )
    if outcome.tracebacks:
        print(
            f"tracebacks in the bot's logs: {len(outcome.tracebacks)}, e.g. {outcome.tracebacks[0]}"
        )


def records(outcome: Outcome) -> Collector:
    f = outcome.figures
    collected = Collector("crash", outcome.backend)
    case = f"{outcome.workload.messages} messages, {outcome.kills} kills"
    collected.add(case, "inbound_recorded", f.inbound_recorded, "", f"== {f.inbound_given}")
    for side in ("servers", "store"):
        collected.add(case, f"lost_at_{side}", f.lost_at(side), "", "0")
        collected.add(case, f"duplicated_at_{side}", f.duplicated_at(side), "", "0")
    collected.add(case, "unknown_per_1000_sends", f.unknown_per_1000, "", None)
    not_alerted = f.unknown_total - f.alerted - f.alert_unknown
    collected.add(case, "unknown_not_alerted", not_alerted, "", "0")
    return collected


async def main(
    workload: Workload, database_url: str | None, json_path: str | None, keep: Path | None
) -> int:
    logging.disable(logging.CRITICAL)  # the fakes' and SQLAlchemy's chatter; figures only
    print(f"seed {workload.seed}", flush=True)
    url = loopback_only(database_url) if database_url else None
    if keep is not None:  # the bot's logs, and the SQLite database, stay for a post-mortem
        if url is None:
            outcome = await run(workload, f"sqlite+aiosqlite:///{keep / 'crash.db'}", keep)
        else:
            async with scratch_database(url) as scratch:
                outcome = await run(workload, scratch, keep)
    else:
        with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
            async with scratch_database(url) as scratch:
                outcome = await run(workload, scratch, Path(tmp))
    report(outcome)
    write_results(json_path, records(outcome).records)
    clean = sum(outcome.figures.lost.values()) == sum(outcome.figures.duplicated.values()) == 0
    return 0 if outcome.settled and clean else 1


def workload_from(args: argparse.Namespace) -> Workload:
    quick = {"messages": 100, "contacts": 10, "kills": 3, "rate": 5.0} if args.quick else {}
    given = {
        "messages": args.messages,
        "contacts": args.contacts,
        "kills": args.kills,
        "rate": args.rate,
    }
    chosen = given | {k: v for k, v in quick.items() if given[k] is None}
    defaults = Workload()
    return Workload(
        messages=chosen["messages"] or defaults.messages,
        contacts=chosen["contacts"] or defaults.contacts,
        kills=chosen["kills"] if chosen["kills"] is not None else defaults.kills,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(10**6),
        rate=chosen["rate"] or defaults.rate,
        latency=parse_latency(args.latency_ms),
        lease_seconds=args.lease_seconds,
        time_limit=args.time_limit,
        linger=args.linger,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="default 1000")
    parser.add_argument("--contacts", type=int, default=None, help="default 100")
    parser.add_argument("--kills", type=int, default=None, help="default 10")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--rate", type=float, default=None, help="messages given a second; 8")
    parser.add_argument("--latency-ms", default="20-150", help="sendMessage answer delay range")
    parser.add_argument("--lease-seconds", type=float, default=3.0)
    parser.add_argument("--time-limit", type=float, default=1800.0)
    parser.add_argument(
        "--linger", type=float, default=0.0, help="seconds to keep the bot up once settled"
    )
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL: a scratch database is made beside it"
    )
    parser.add_argument("--json", default=None, help="write the figures as bench records")
    parser.add_argument("--quick", action="store_true", help="100 messages, 10 contacts, 3 kills")
    parser.add_argument(
        "--keep", type=Path, default=None, help="a new directory: keep the logs (and SQLite) there"
    )
    arguments = parser.parse_args()
    if arguments.keep is not None:
        arguments.keep.mkdir(parents=True, exist_ok=True)
    sys.exit(
        asyncio.run(
            main(workload_from(arguments), arguments.database_url, arguments.json, arguments.keep)
        )
    )
