"""Driving a fleet of workers: customers who wait for their answers, updates delivered the
way Telegram delivers them, and what the harness watches meanwhile.

Each customer is a private chat that sends its messages in turns and waits for the answer
before the next turn, as a person does. Most turns are one message; a seeded share are two
messages sent back to back, which in webhook mode reach two different workers, so that one
worker records a message while another is running the conversation. A turn is over when the
store has recorded its messages and has nothing left to do for the chat (no unanswered
message, no unsent reply) and the fake has received a reply since the turn began, or the
store has given the reply up as `unknown` or `failed`.

The watcher reads the store and the fake's calls every tenth of a second. After a SIGKILL it
also follows the leases the killed worker held, until other workers hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from bot.store import leases
from bot.store.db import Database
from bot.store.models import ChannelIdentity, Lease, Message, OutboxItem
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram_updates import JSON
from tests.support.fleet import FIRST_CHAT, WEBHOOK_SECRET, Fleet

TICK_SECONDS = 0.1


@dataclass
class Turn:
    """Messages a customer sends at once, and what came of them."""

    texts: tuple[str, ...]
    sent_at: float = 0.0
    done_at: float | None = None
    """When the turn was over (monotonic); None if it stalled past the turn timeout."""
    replies: int = 0
    """Replies the fake received for the chat during the turn."""


@dataclass
class Customer:
    chat: int
    name: str
    turns: list[Turn]
    sent: int = 0


def plan(messages: int, conversations: int, burst_share: float, seed: int) -> list[Customer]:
    """`messages` spread evenly over `conversations`, in turns of one or (a seeded
    `burst_share` of the time) two messages."""
    rng = random.Random(seed)
    customers = []
    for n in range(conversations):
        count = messages // conversations + (1 if n < messages % conversations else 0)
        texts = [f"c{n} m{k}" for k in range(1, count + 1)]
        turns: list[Turn] = []
        while texts:
            size = 2 if len(texts) > 1 and rng.random() < burst_share else 1
            turns.append(Turn(tuple(texts[:size])))
            texts = texts[size:]
        customers.append(Customer(FIRST_CHAT + n, f"Customer{n}", turns))
    return customers


# --- delivery -----------------------------------------------------------------------------------


class WebhookDelivery:
    """Posts each update to the next live worker in turn. A post that fails or is refused
    goes to the next worker, as Telegram delivers an update again until a webhook takes it.

    Use `async with`: the posts share one HTTP client session.
    """

    def __init__(self, fake: FakeTelegram, fleet: Fleet, give_up_after: float = 60.0) -> None:
        self.fake, self.fleet, self.give_up_after = fake, fleet, give_up_after
        self.redelivered = 0
        self._turn = 0
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookDelivery:
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def deliver(self, update: JSON) -> None:
        deadline = time.monotonic() + self.give_up_after
        while True:
            urls = self.fleet.webhook_urls()
            if urls and await self._post(urls[self._turn % len(urls)], update):
                # Taken: off the queue getUpdates would serve, as Telegram does.
                with contextlib.suppress(ValueError):
                    self.fake.pending.remove(update)
                return
            self.redelivered += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker took update {update['update_id']}")
            await asyncio.sleep(0.05)

    async def _post(self, url: str, update: JSON) -> bool:
        assert self._http is not None, "use `async with WebhookDelivery(...)`"
        self._turn += 1
        headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        try:
            async with self._http.post(url, json=update, headers=headers) as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError):
            return False  # a killed worker: connection refused, or reset mid-request


class PollingDelivery:
    """Updates wait at the fake for the elected poller's getUpdates."""

    redelivered = 0

    async def __aenter__(self) -> PollingDelivery:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def deliver(self, update: JSON) -> None:
        del update  # `user_message` queued it already


Delivery = WebhookDelivery | PollingDelivery


# --- what the harness sees ----------------------------------------------------------------------


@dataclass
class StoreView:
    recorded: Counter[int] = field(default_factory=Counter)
    """Inbound messages stored, per chat."""
    busy: set[int] = field(default_factory=set)
    """Chats with an unanswered message or an unsent reply."""
    undelivered: Counter[int] = field(default_factory=Counter)
    """Outbox items given up as `unknown` or `failed`, per chat."""


async def store_view(db: Database) -> StoreView:
    telegram = ChannelIdentity.channel == "telegram"
    joined = select(ChannelIdentity.address, func.count(Message.id)).join(
        Message, Message.contact_id == ChannelIdentity.contact_id
    )
    recorded = joined.where(telegram, Message.direction == "in").group_by(ChannelIdentity.address)
    unanswered = (
        select(ChannelIdentity.address)
        .join(Message, Message.contact_id == ChannelIdentity.contact_id)
        .where(telegram, Message.direction == "in", Message.handled_at.is_(None))
        .distinct()
    )
    unsent = (
        select(OutboxItem.recipient)
        .where(OutboxItem.channel == "telegram", OutboxItem.status.in_(("pending", "sending")))
        .distinct()
    )
    given_up = (
        select(OutboxItem.recipient, func.count(OutboxItem.id))
        .where(OutboxItem.channel == "telegram", OutboxItem.status.in_(("unknown", "failed")))
        .group_by(OutboxItem.recipient)
    )
    view = StoreView()
    async with db.reading() as session:
        view.recorded.update({int(a): n for a, n in (await session.execute(recorded)).all()})
        view.busy.update(int(a) for a in (await session.execute(unanswered)).scalars())
        view.busy.update(_chats((await session.execute(unsent)).scalars()))
        view.undelivered.update(
            {
                int(r): n
                for r, n in (await session.execute(given_up)).all()
                if r.lstrip("-").isdigit()
            }
        )
    return view


def _chats(recipients: object) -> list[int]:
    return [int(r) for r in recipients if str(r).lstrip("-").isdigit()]  # type: ignore[attr-defined]


class FakeLedger:
    """The sendMessage calls the fake has answered, per chat, read as they complete."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.replies: defaultdict[int, int] = defaultdict(int)
        self._seen = 0
        self._open: list[int] = []

    def scan(self) -> None:
        calls = self.fake.calls
        self._open.extend(range(self._seen, len(calls)))
        self._seen = len(calls)
        waiting = []
        for index in self._open:
            call = calls[index]
            if call.status is None:
                waiting.append(index)
            elif call.status == 200 and call.method.lower() == "sendmessage":
                self.replies[int(call.params["chat_id"])] += 1
        self._open = waiting

    def answered(self, chats: set[int]) -> int:
        return sum(self.replies[chat] for chat in chats)


@dataclass
class _Waiter:
    customer: Customer
    replies_before: int
    undelivered_before: int
    done: asyncio.Future[bool]


class Watcher:
    """Reads the store and the fake every tick and ends the customers' turns."""

    def __init__(self, db: Database, fake: FakeTelegram) -> None:
        self.db, self.ledger = db, FakeLedger(fake)
        self.view = StoreView()
        self._waiters: list[_Waiter] = []

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(DBAPIError):  # the server full: look again next tick
                await self.tick()
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self) -> None:
        # The store first: a reply it records as sent has reached the fake by then.
        self.view = await store_view(self.db)
        self.ledger.scan()
        waiting = []
        for waiter in self._waiters:
            if waiter.done.done():
                continue
            if self._over(waiter):
                waiter.done.set_result(True)
            else:
                waiting.append(waiter)
        self._waiters = waiting

    def _over(self, waiter: _Waiter) -> bool:
        chat = waiter.customer.chat
        settled = self.view.recorded[chat] >= waiter.customer.sent and chat not in self.view.busy
        answered = self.ledger.replies[chat] > waiter.replies_before
        gave_up = self.view.undelivered[chat] > waiter.undelivered_before
        return settled and (answered or gave_up)

    async def turn(
        self,
        customer: Customer,
        turn: Turn,
        delivery: Delivery,
        fake: FakeTelegram,
        patience: float,
    ) -> None:
        """Send one turn and wait until it is over (or `patience` runs out: a stalled turn)."""
        chat = customer.chat
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            customer, self.ledger.replies[chat], self.view.undelivered[chat], loop.create_future()
        )
        turn.sent_at = time.monotonic()
        for text in turn.texts:
            await delivery.deliver(fake.user_message(chat, text, first_name=customer.name))
            customer.sent += 1
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), patience)
            turn.done_at = time.monotonic()
        except TimeoutError:
            waiter.done.cancel()
        turn.replies = self.ledger.replies[chat] - waiter.replies_before


async def drive(
    customer: Customer, watcher: Watcher, delivery: Delivery, fake: FakeTelegram, patience: float
) -> None:
    for turn in customer.turns:
        await watcher.turn(customer, turn, delivery, fake, patience)


# --- takeover -----------------------------------------------------------------------------------


@dataclass
class Takeover:
    """One lease the killed worker held, and when another worker held it."""

    name: str
    lapsed_after: float
    """Seconds from the kill until the lease expired (its last heartbeat's doing)."""
    taken_after: float | None = None
    """Seconds from the kill until another worker held it; None: none needed it meanwhile."""

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class TakeoverWatch:
    """Follows the leases a killed worker held until other workers hold them.

    A lease whose row is gone was taken, used and released by another worker between two
    looks (only the holder deletes its lease): its time is that of the look, a tick late at
    most. Per-worker leases (the outbox's sender lease) are never taken over, only left to
    lapse, and are not followed.
    """

    def __init__(self, db: Database, worker_id: str, killed_at: float) -> None:
        self.db, self.worker_id, self.killed_at = db, worker_id, killed_at
        self.leases: dict[str, Takeover] = {}

    async def snapshot(self) -> None:
        query = select(Lease.name, Lease.expires_at).where(leases.owned_by(self.worker_id))
        async with self.db.reading() as session:
            rows = (await session.execute(query)).all()
        self.leases = {
            name: Takeover(name, _epoch(expires) - self.killed_at)
            for name, expires in rows
            if not name.endswith(f":{self.worker_id}")
        }

    def open(self) -> list[Takeover]:
        return [t for t in self.leases.values() if t.taken_after is None]

    async def look(self) -> None:
        names = [t.name for t in self.open()]
        if not names:
            return
        query = select(Lease.name, Lease.owner, Lease.acquired_at).where(Lease.name.in_(names))
        async with self.db.reading() as session:
            rows = {name: (owner, at) for name, owner, at in (await session.execute(query)).all()}
        now = time.time()
        for name in names:
            found = rows.get(name)
            if found is None:
                self.leases[name].taken_after = now - self.killed_at
            elif found[0] != self.worker_id:
                self.leases[name].taken_after = _epoch(found[1]) - self.killed_at

    async def follow(self, until: float) -> None:
        """Look every tick until every lease is taken or the monotonic time `until`."""
        while self.open() and time.monotonic() < until:
            with contextlib.suppress(DBAPIError):  # the server full: look again next tick
                await self.look()
            await asyncio.sleep(TICK_SECONDS)
