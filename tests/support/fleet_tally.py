"""Counting a fleet run, from the fake Bot API's side and from the store's, once it settled.

From the fake: the replies each chat received, in the order they arrived, against the replies
the store queued for it. `bench-steps` asks question n in its n-th reply, so a chat's
questions must rise by one from 1:

- delivered twice: the fake received a reply more often than the outbox holds it;
- asked again: the outbox holds the same question twice for a chat, i.e. a run asked what an
  earlier run had already asked (it did not see that reply);
- out of order: a question arrived after a later one;
- never arrived: a reply the outbox records as sent that the fake never received, and, told
  apart, `unknown` sends (a reply cut off mid-send by the kill, never resent) that never
  reached it.

The check-ins each scheduled contact received, against the firings the store recorded.

From the store: every inbound message recorded once and handled; the runs each message was
given to (from the audit trail's `run_started` records: a message given to two runs was
answered twice); the outbox's statuses; the job's firings and their wake-ups.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.store.db import Database
from bot.store.models import (
    AuditEvent,
    ChannelIdentity,
    Conversation,
    JobFiring,
    Message,
    OutboxItem,
    Wakeup,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.fleet import CHECK_IN, CHECK_IN_AGENT, FIRST_CHAT, FIRST_SCHEDULED, STAFF_CHAT
from tests.support.fleet_load import Customer

QUESTION = re.compile(r"Question (\d+) of ")
PER_CHAT_SECONDS = 1.0
"""Telegram's limit of one message a second to a private chat."""


def number_of(text: str) -> int | None:
    found = QUESTION.search(text)
    return int(found.group(1)) if found else None


@dataclass
class ChatReplies:
    """What one customer's chat received (at the fake) and was queued (in the outbox)."""

    received: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    queued: list[tuple[str, str]] = field(default_factory=list)
    """(status, text) of the chat's outbox items, in the order they were queued."""

    @property
    def numbers(self) -> list[int]:
        return [n for n in map(number_of, self.received) if n is not None]

    @property
    def other(self) -> int:
        """Replies that are no question (a handoff notice, say)."""
        return len(self.received) - len(self.numbers)

    @property
    def delivered_twice(self) -> int:
        held = Counter(text for status, text in self.queued if status in ("sent", "unknown"))
        return sum(max(0, n - held[text]) for text, n in Counter(self.received).items())

    @property
    def asked_again(self) -> int:
        asked = [n for n in (number_of(text) for _, text in self.queued) if n is not None]
        return len(asked) - len(set(asked))

    @property
    def out_of_order(self) -> int:
        highest, late = 0, 0
        for number in dict.fromkeys(self.numbers):  # first arrivals, in order
            late += number < highest
            highest = max(highest, number)
        return late

    @property
    def never_arrived(self) -> int:
        arrived = Counter(self.received)
        return sum(arrived[text] == 0 for status, text in self.queued if status == "sent")

    @property
    def unknown_missing(self) -> int:
        arrived = set(self.received)
        return sum(status == "unknown" and text not in arrived for status, text in self.queued)

    @property
    def faster_than_allowed(self) -> int:
        """Consecutive replies closer together than Telegram lets one chat receive."""
        return sum(b - a < PER_CHAT_SECONDS for a, b in itertools.pairwise(self.times))


@dataclass
class Firing:
    scheduled_for: datetime
    worker: str
    status: str
    manual: bool
    wakeups: Counter[str] = field(default_factory=Counter)


@dataclass
class Tally:
    """Everything counted after a run settled."""

    sent: int = 0
    turns: int = 0
    stalled_turns: int = 0
    single_turns: Counter[int] = field(default_factory=Counter)
    """Replies a one-message turn got -> how many such turns."""
    double_turns: Counter[int] = field(default_factory=Counter)
    """Replies a two-message turn got (1: answered together, 2: one by one)."""
    chats: dict[int, ChatReplies] = field(default_factory=dict)
    recorded: int = 0
    recorded_twice: int = 0
    unhandled: int = 0
    runs_per_message: Counter[int] = field(default_factory=Counter)
    """Number of runs a message was given to -> how many messages."""
    shared_messages: dict[int, list[str]] = field(default_factory=dict)
    """Each message given to more than one run -> those runs, for the failure report."""
    resumed_runs: int = 0
    handed_off: int = 0
    outbox: Counter[str] = field(default_factory=Counter)
    firings: list[Firing] = field(default_factory=list)
    check_ins: dict[int, int] = field(default_factory=dict)
    """Check-ins each scheduled contact received at the fake."""
    check_ins_ran: dict[int, int] = field(default_factory=dict)
    """Check-in wake-ups that ran for each scheduled contact (one per firing, unless one was
    postponed past the end of the run: a busy conversation waits a minute)."""
    check_in_outbox: Counter[str] = field(default_factory=Counter)
    staff_posts: int = 0

    @property
    def replies(self) -> int:
        return sum(len(c.received) for c in self.chats.values())

    def total(self, name: str) -> int:
        """A per-chat count (`delivered_twice`, `asked_again`, ...) over every chat."""
        return sum(int(getattr(chat, name)) for chat in self.chats.values())

    @property
    def doubled_messages(self) -> int:
        return sum(n for runs, n in self.runs_per_message.items() if runs > 1)

    @property
    def firings_done(self) -> int:
        return sum(f.status == "done" for f in self.firings)

    @property
    def lost(self) -> int:
        """Messages never recorded or never answered, and replies recorded as sent that never
        arrived. (A reply cut off by the kill is `unknown`: the documented ambiguous window.)"""
        never_recorded = self.sent - self.recorded
        return never_recorded + self.unhandled + self.total("never_arrived")

    @property
    def doubled(self) -> int:
        return self.doubled_messages + self.total("delivered_twice")

    def problems(self) -> list[str]:
        """Every way the run broke a promise; empty when it kept them all."""
        counts = [
            (self.sent - self.recorded, "messages never recorded"),
            (self.recorded_twice, "messages recorded twice"),
            (self.unhandled, "messages never answered"),
            (self.doubled_messages, f"messages given to two runs {self.shared_messages}"),
            (self.total("delivered_twice"), "replies delivered twice"),
            (self.total("asked_again"), "questions asked again (a run missed the last reply)"),
            (self.total("out_of_order"), "replies out of order"),
            (self.total("never_arrived"), "replies recorded as sent that never arrived"),
            (self.stalled_turns, "turns with no answer within the customer's patience"),
            (self.handed_off, "conversations handed off"),
        ]
        found = [f"{n} {what}" for n, what in counts if n]
        return found + self._firing_problems()

    def _firing_problems(self) -> list[str]:
        found = []
        slots = Counter(f.scheduled_for for f in self.firings if not f.manual)
        found += [f"slot {slot:%H:%M} fired {n} times" for slot, n in slots.items() if n > 1]
        found += [
            f"firing at {f.scheduled_for:%H:%M:%S} {f.status}"
            for f in self.firings
            if f.status != "done"
        ]
        wrong = [chat for chat, n in self.check_ins.items() if n != self.check_ins_ran.get(chat)]
        found += [f"{len(wrong)} contacts got another number of check-ins than ran"] * bool(wrong)
        return found


async def tally(
    db: Database, fake: FakeTelegram, customers: list[Customer], scheduled: int
) -> Tally:
    result = Tally()
    _count_turns(result, customers)
    _count_fake(result, fake, scheduled)
    await _count_store(result, db)
    await _count_firings(result, db)
    return result


def _count_turns(result: Tally, customers: list[Customer]) -> None:
    for customer in customers:
        result.sent += customer.sent
        for turn in customer.turns:
            result.turns += 1
            result.stalled_turns += turn.done_at is None
            counter = result.single_turns if len(turn.texts) == 1 else result.double_turns
            counter[turn.replies] += 1


def _count_fake(result: Tally, fake: FakeTelegram, scheduled: int) -> None:
    check_ins: Counter[int] = Counter()
    chats: defaultdict[int, ChatReplies] = defaultdict(ChatReplies)
    for call in fake.calls:
        if call.method.lower() != "sendmessage" or call.status != 200:
            continue
        chat, text = int(call.params["chat_id"]), str(call.params.get("text", ""))
        if chat == STAFF_CHAT:
            result.staff_posts += 1
        elif chat >= FIRST_SCHEDULED:
            check_ins[chat] += text.startswith(CHECK_IN)
        elif chat >= FIRST_CHAT:
            chats[chat].received.append(text)
            chats[chat].times.append(call.at)
    result.chats = dict(chats)
    result.check_ins = {
        FIRST_SCHEDULED + n: check_ins[FIRST_SCHEDULED + n] for n in range(scheduled)
    }


async def _count_store(result: Tally, db: Database) -> None:
    inbound = (
        select(Message.id, Message.external_id, Message.handled_at)
        .join(ChannelIdentity, ChannelIdentity.contact_id == Message.contact_id)
        .where(ChannelIdentity.channel == "telegram", Message.direction == "in")
    )
    started = select(AuditEvent.kind, AuditEvent.run_id, AuditEvent.payload).where(
        AuditEvent.kind.in_(("run_started", "run_resumed"))
    )
    outbox = select(OutboxItem.recipient, OutboxItem.status, OutboxItem.text).order_by(
        OutboxItem.id
    )
    async with db.reading() as session:
        rows = (await session.execute(inbound)).all()
        audit = (await session.execute(started)).all()
        items = (await session.execute(outbox)).all()
        handed_off = select(func.count()).where(
            Conversation.state != "bot", Conversation.channel == "telegram"
        )
        result.handed_off = int((await session.execute(handed_off)).scalar_one())
    mine = [r for r in rows if FIRST_CHAT <= _chat_of(r.external_id) < FIRST_SCHEDULED]
    result.recorded = len(mine)
    result.recorded_twice = len(mine) - len({r.external_id for r in mine})
    result.unhandled = sum(r.handled_at is None for r in mine)
    _count_runs(result, {r.id for r in mine}, [(k, str(r), dict(p)) for k, r, p in audit])
    _count_outbox(result, [(str(r), s, t) for r, s, t in items])


def _chat_of(external_id: str | None) -> int:
    return int((external_id or "0:").split(":", 1)[0])


def _count_runs(
    result: Tally, messages: set[int], audit: list[tuple[str, str, dict[str, Any]]]
) -> None:
    runs: defaultdict[int, set[str]] = defaultdict(set)
    for kind, run_id, payload in audit:
        result.resumed_runs += kind == "run_resumed"
        for given in payload.get("input", []):
            if given.get("id") in messages:
                runs[given["id"]].add(run_id)
    result.runs_per_message = Counter(len(runs.get(m, ())) for m in messages)
    result.shared_messages = {m: sorted(runs[m]) for m in messages if len(runs.get(m, ())) > 1}


def _count_outbox(result: Tally, items: list[tuple[str, str, str]]) -> None:
    for recipient, status, text in items:
        chat = int(recipient) if recipient.lstrip("-").isdigit() else 0
        if chat >= FIRST_SCHEDULED:
            result.check_in_outbox[status] += 1
        elif chat >= FIRST_CHAT:
            result.outbox[status] += 1
            result.chats.setdefault(chat, ChatReplies()).queued.append((status, text))


async def _count_firings(result: Tally, db: Database) -> None:
    firings = (
        select(JobFiring)
        .where(JobFiring.job_name == CHECK_IN_AGENT)
        .order_by(JobFiring.scheduled_for)
    )
    wakeups = (
        select(Wakeup.cause, Wakeup.status, Wakeup.result, ChannelIdentity.address)
        .join(ChannelIdentity, ChannelIdentity.contact_id == Wakeup.contact_id)
        .where(Wakeup.agent_name == CHECK_IN_AGENT)
    )
    async with db.reading() as session:
        rows = list((await session.execute(firings)).scalars())
        woken = (await session.execute(wakeups)).all()
    by_slot = {
        row.scheduled_for.isoformat(): Firing(
            row.scheduled_for, row.worker, row.status, row.manual_by is not None
        )
        for row in rows
    }
    ran: Counter[int] = Counter()
    for cause, status, why, address in woken:
        firing = by_slot.get(str(cause.get("scheduled_for")))
        if firing is not None:
            firing.wakeups[f"{status}: {why}" if why and status != "done" else status] += 1
        ran[int(address)] += status == "done"
    result.firings = list(by_slot.values())
    result.check_ins_ran = {chat: ran[chat] for chat in result.check_ins}
