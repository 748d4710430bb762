"""Counting a crash run of `bench.crash`: from the fake servers' side and from the store's.

What the harness gave the servers (`Inbound`) is compared with what came back to them (the
fake Bot API's messages per chat, the mails aiosmtpd accepted per recipient) and with what the
store says happened:

- The servers' side knows the order of each chat (Telegram message ids count per chat, both
  ways) and, for email, which outbox item a mail is (our Message-ID names it) and which inbound
  mail it follows (`In-Reply-To`). A contact whose last messages have no reply after them has
  lost them; an email item accepted twice, or more replies in a chat than the store sent
  (plus the `unknown` ones that may have arrived), is a duplicate.
- The store's side knows which run answered each inbound message (`run_id`), which messages
  each run was started with (the `run_started`/`run_resumed` audit records), and each reply's
  outbox item and its channel id. A message two runs replied to is a duplicate; a message no
  run answered, or whose reply is recorded as sent but never reached the server, is lost.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agents.prompt import history_messages
from agents.providers.offline import IDENTITY_ANSWER
from bot.desk.staff import STAFF_CHANNEL
from bot.store.db import Database
from bot.store.models import (
    AgentRun,
    AuditEvent,
    Contact,
    ContactEvent,
    JobFiring,
    Message,
    OutboxItem,
    Wakeup,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.mail_servers import SmtpSink

CHECK_IN = "a quick check-in from the crash bench"
"""In the message of the bench agent's schedule trigger (every minute, every contact)."""
PING_EVENT = "bench.ping"
PING = "thanks for trying the crash bench"
"""In the message of the bench agent's event trigger (`bench.ping`, once per contact)."""
FIRST_USER = 70_000
CUSTOMER_CHANNELS = ("telegram", "email")
SENT_OR_MAYBE = ("sent", "unknown")

Kind = Literal["reply", "check-in", "ping", "other"]
KINDS: tuple[Kind, ...] = ("reply", "check-in", "ping")


def kind_of(text: str) -> Kind:
    """What a message from the bot is: an answer, or one of the two automatic messages."""
    if IDENTITY_ANSWER in text:
        return "reply"
    if CHECK_IN in text:
        return "check-in"
    return "ping" if PING in text else "other"


@dataclass(frozen=True, slots=True)
class Customer:
    """One of the bench's contacts; even numbers write on Telegram, odd ones by email."""

    number: int

    @property
    def channel(self) -> Literal["telegram", "email"]:
        return "telegram" if self.number % 2 == 0 else "email"

    @property
    def first_name(self) -> str:
        return f"Cust{self.number:03d}"

    @property
    def user_id(self) -> int:
        return FIRST_USER + self.number

    @property
    def email(self) -> str:
        return f"customer{self.number:03d}@prospect.test"

    @property
    def address(self) -> str:
        """Where the outbox sends to this customer (`OutboxItem.recipient`)."""
        return str(self.user_id) if self.channel == "telegram" else self.email


@dataclass
class Inbound:
    """One message the harness gave a server on a customer's behalf."""

    customer: Customer
    seq: int
    """0, 1, 2... within the customer's messages."""
    text: str
    external_id: str = ""
    """What the store records it as: `chat:message_id`, or the mail's Message-ID."""
    position: int = 0
    """Telegram: its message id in the chat (ids count both ways)."""


@dataclass
class Delivered:
    """One message a fake server received for a customer."""

    customer: Customer
    kind: Kind
    ref: str
    """Telegram: `chat:message_id`, as the outbox records a sent item; email: the Message-ID."""
    follows: int
    """How many of the customer's inbound messages it came after: Telegram, by message id;
    email, by the one its `In-Reply-To` names (the latest when the reply was composed)."""
    outbox_id: int | None = None
    """Email: the outbox item our Message-ID names."""


# --- the servers' side ----------------------------------------------------------------------


def telegram_deliveries(
    fake: FakeTelegram, customer: Customer, inbound: list[Inbound]
) -> list[Delivered]:
    positions = sorted(m.position for m in inbound)
    found = []
    for message in fake.bot_messages(customer.user_id):
        position = int(message["message_id"])
        found.append(
            Delivered(
                customer,
                kind_of(str(message.get("text", ""))),
                f"{customer.user_id}:{position}",
                sum(p < position for p in positions),
            )
        )
    return found


def email_deliveries(smtp: SmtpSink, customer: Customer, inbound: list[Inbound]) -> list[Delivered]:
    seq_of = {m.external_id: m.seq for m in inbound}
    found = []
    for received in smtp.to(customer.email):
        mail = received.message
        message_id = str(mail.get("Message-ID", ""))
        replied = str(mail.get("In-Reply-To", "")).strip()
        body = mail.get_body(preferencelist=("plain",))
        text = str(body.get_content()) if body is not None else ""
        outbox_id = message_id.split("-")[1] if message_id.startswith("<outbox-") else ""
        found.append(
            Delivered(
                customer,
                kind_of(text),
                message_id,
                seq_of[replied] + 1 if replied in seq_of else 0,
                int(outbox_id) if outbox_id.isdigit() else None,
            )
        )
    return found


def staff_refs(fake: FakeTelegram, staff_chat: int) -> dict[str, str]:
    """The staff group's messages the bot posted, by `chat:message_id`: their texts."""
    return {
        f"{staff_chat}:{message['message_id']}": str(message.get("text", ""))
        for message in fake.bot_messages(staff_chat)
    }


# --- the store's side -----------------------------------------------------------------------


@dataclass
class Store:
    """What the store holds at the end of a run, for the bench's customers."""

    customer_of: dict[int, Customer]
    """Contact id: customer."""
    inbound: list[Message]
    runs: dict[str, AgentRun]
    inputs: dict[str, set[int]]
    """Run id: the inbound message ids it answers, those of its first start record (a resumed
    run answers those; messages that came later get a run of their own)."""
    resumed: set[str]
    woken_by: dict[str, list[tuple[int, str]]]
    """Run id: the wake-ups (id, `event` or `job`) that started or resumed it. A proactive
    run left unfinished by a kill is resumed by the next wake-up of its conversation, which
    may be another one."""
    items: list[OutboxItem]
    firings: Counter[str]
    wakeups: Counter[str]
    event_wakeups: dict[int, str]
    """Contact id: how its event's wake-up ended (status and result)."""
    events_stored: int
    uncertain_marked: dict[int, bool]
    """Unknown item id: whether the agent's history shows its message "[delivery uncertain]"."""


async def read_store(db: Database, customers: list[Customer]) -> Store:
    by_user = {c.user_id: c for c in customers}
    by_email = {c.email: c for c in customers}
    async with db.reading() as session:
        contacts = (await session.execute(select(Contact))).scalars()
        customer_of = {
            contact.id: customer
            for contact in contacts
            if (
                customer := by_user.get(contact.telegram_user_id or 0)
                or by_email.get(contact.email or "")
            )
        }
        inbound = list(
            (
                await session.execute(
                    select(Message).where(Message.direction == "in").order_by(Message.id)
                )
            ).scalars()
        )
        runs = {run.id: run for run in (await session.execute(select(AgentRun))).scalars()}
        starts = await session.execute(
            select(AuditEvent.run_id, AuditEvent.kind, AuditEvent.payload)
            .where(AuditEvent.kind.in_(("run_started", "run_resumed")))
            .order_by(AuditEvent.id)
        )
        inputs: dict[str, set[int]] = {}
        resumed: set[str] = set()
        woken_by: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for run_id, kind, payload in starts:
            inputs.setdefault(run_id, {int(m["id"]) for m in payload.get("input", [])})
            if kind == "run_resumed":
                resumed.add(run_id)
            cause = payload.get("cause") or {}
            if "wakeup_id" in cause:
                woken_by[run_id].append(
                    (int(cause["wakeup_id"]), "job" if "job" in cause else "event")
                )
        items = list((await session.execute(select(OutboxItem).order_by(OutboxItem.id))).scalars())
        firings = Counter((await session.execute(select(JobFiring.status))).scalars())
        wakeups: Counter[str] = Counter()
        event_wakeups = {}
        for wakeup in (await session.execute(select(Wakeup))).scalars():
            wakeups[wakeup.status] += 1
            if "event_id" in wakeup.cause:
                result = (wakeup.result or "").split(";")[0][:80]
                event_wakeups[wakeup.contact_id] = f"{wakeup.status}: {result}".rstrip(": ")
        marked = await uncertain_marks(session, items)
        events_stored = await session.scalar(
            select(func.count(ContactEvent.id)).where(ContactEvent.type == PING_EVENT)
        )
    return Store(
        customer_of,
        [m for m in inbound if m.contact_id in customer_of],
        runs,
        inputs,
        resumed,
        dict(woken_by),
        items,
        firings,
        wakeups,
        event_wakeups,
        events_stored or 0,
        marked,
    )


async def uncertain_marks(session: AsyncSession, items: list[OutboxItem]) -> dict[int, bool]:
    """For each unknown customer item: is its message shown to the model as uncertain?"""
    marks = {}
    for item in items:
        if item.status != "unknown" or item.channel == STAFF_CHANNEL or item.message_id is None:
            continue
        message = await session.get(Message, item.message_id)
        shown = history_messages([message], None) if message is not None else []
        marks[item.id] = any(
            getattr(turn, "text", "").startswith("[delivery uncertain] ") for turn in shown
        )
    return marks


# --- the figures ----------------------------------------------------------------------------


@dataclass
class Figures:
    """Everything `bench.crash` prints; lost and duplicated must be 0."""

    inbound_given: int = 0
    inbound_recorded: int = 0
    runs: Counter[str] = field(default_factory=Counter)
    """By trigger and status, e.g. `inbound finished`."""
    runs_resumed: int = 0
    runs_adopted: int = 0
    """Proactive runs left unfinished by a kill and resumed by another wake-up than theirs."""
    handoffs: Counter[str] = field(default_factory=Counter)
    """Runs handed off, by trigger and reason."""
    replies_at_servers: Counter[str] = field(default_factory=Counter)
    """By channel and kind, e.g. `telegram reply`."""
    items: Counter[str] = field(default_factory=Counter)
    """Customer items by kind (reply, check-in) and status."""
    lost: Counter[str] = field(default_factory=Counter)
    """Inbound messages, by `servers: why` (what the fake servers saw) and `store: why`."""
    duplicated: Counter[str] = field(default_factory=Counter)
    """Likewise, from either side."""
    not_lost_but: Counter[str] = field(default_factory=Counter)
    """Answered otherwise than by a reply that arrived: failed, handed off, still queued."""
    sends: int = 0
    """Customer items handed to a channel (sent, unknown or failed)."""
    unknown: Counter[str] = field(default_factory=Counter)
    """Unknown customer items by channel."""
    unknown_reached: Counter[str] = field(default_factory=Counter)
    """Of those, how many the server did receive, by channel."""
    unknown_staff_posts: int = 0
    alerted: int = 0
    """Unknown items whose staff alert the fake Bot API received in the staff group."""
    alert_unknown: int = 0
    """Unknown items whose alert was itself cut by a kill (`unknown` too; not alerted
    about again: a staff post cannot report on itself)."""
    resent: int = 0
    """Unknown items that went out again (must be 0)."""
    marked: int = 0
    """Unknown items the agent's history shows as "[delivery uncertain]"."""
    firings: Counter[str] = field(default_factory=Counter)
    wakeups: Counter[str] = field(default_factory=Counter)
    pings: Counter[str] = field(default_factory=Counter)
    """What became of each contact's `bench.ping` event, by its message's outbox status."""
    event_posts: Counter[str] = field(default_factory=Counter)
    """The harness's POST /events answers by HTTP status (0: no answer, the bot was down)."""
    events_stored: int = 0
    """`bench.ping` events in the store: one per contact, however often each was posted."""
    contacts_mismatched: list[str] = field(default_factory=list)
    """Customers whose replies at the server are not what the store sent."""

    def lost_at(self, side: Literal["servers", "store"]) -> int:
        return sum(n for why, n in self.lost.items() if why.startswith(side))

    def duplicated_at(self, side: Literal["servers", "store"]) -> int:
        return sum(n for why, n in self.duplicated.items() if why.startswith(side))

    @property
    def unknown_total(self) -> int:
        return sum(self.unknown.values())

    @property
    def unknown_per_1000(self) -> float:
        return self.unknown_total * 1000 / self.sends if self.sends else 0.0

    @property
    def policy_held(self) -> bool:
        alerted = self.alerted + self.alert_unknown
        return alerted == self.marked == self.unknown_total and self.resent == 0


def count(
    store: Store,
    inbound: list[Inbound],
    at_servers: dict[Customer, list[Delivered]],
    staff: dict[str, str],
    pinged: list[Customer],
) -> Figures:
    figures = Figures(inbound_given=len(inbound))
    figures.runs = Counter(f"{r.trigger} {r.status}" for r in store.runs.values())
    figures.runs_resumed = len(store.resumed)
    figures.handoffs = Counter(
        f"{r.trigger}: {(r.stop_reason or '')[:60]}"
        for r in store.runs.values()
        if r.status == "handed_off"
    )
    figures.firings, figures.wakeups = store.firings, store.wakeups
    figures.events_stored = store.events_stored
    for deliveries in at_servers.values():
        figures.replies_at_servers.update(f"{d.customer.channel} {d.kind}" for d in deliveries)
    customer_items = [i for i in store.items if i.channel in CUSTOMER_CHANNELS]
    for item in customer_items:
        figures.items[f"{kind_of(item.text)} {item.status}"] += 1
    _count_inbound(figures, store, inbound, at_servers)
    _count_deliveries(figures, store, customer_items, at_servers)
    _count_unknown(figures, store, customer_items, at_servers, staff)
    _count_pings(figures, store, customer_items, pinged)
    return figures


def _count_pings(
    figures: Figures, store: Store, items: list[OutboxItem], pinged: list[Customer]
) -> None:
    statuses: dict[Customer, list[str]] = defaultdict(list)
    for item in items:
        customer = store.customer_of.get(item.contact_id or 0)
        if customer is not None and kind_of(item.text) == "ping":
            statuses[customer].append(item.status)
    contact_of = {customer: contact for contact, customer in store.customer_of.items()}
    for customer in pinged:
        found = statuses.get(customer)
        if found:
            figures.pings[" + ".join(sorted(found))] += 1
        else:
            wakeup = store.event_wakeups.get(contact_of.get(customer, 0), "no wake-up")
            figures.pings[f"none queued (wake-up {wakeup})"] += 1


def _count_inbound(
    figures: Figures,
    store: Store,
    inbound: list[Inbound],
    at_servers: dict[Customer, list[Delivered]],
) -> None:
    """Per inbound message: recorded once, answered by one run whose reply arrived."""
    recorded: dict[str, list[Message]] = defaultdict(list)
    for message in store.inbound:
        recorded[message.external_id or ""].append(message)
    figures.inbound_recorded = sum(1 for m in inbound if recorded.get(m.external_id))
    replies = _replies_by_run(store)
    arrived = {d.ref for found in at_servers.values() for d in found}
    arrived |= {str(d.outbox_id) for found in at_servers.values() for d in found if d.outbox_id}
    for given in inbound:
        found = recorded.get(given.external_id, [])
        if len(found) > 1:
            figures.duplicated["store: inbound recorded twice"] += len(found) - 1
        if not found:
            figures.lost["store: never recorded"] += 1
            continue
        message = found[0]
        answering = [
            run_id
            for run_id, ids in store.inputs.items()
            if message.id in ids and any(i.status in SENT_OR_MAYBE for i in replies[run_id])
        ]
        if len(answering) > 1:
            figures.duplicated["store: answered by two runs"] += 1
        outcome = _answer_of(message, store, replies, arrived)
        if outcome.startswith("lost "):
            figures.lost[outcome.removeprefix("lost ")] += 1
        elif outcome != "answered":
            figures.not_lost_but[outcome] += 1
    _check_order(figures, inbound, at_servers)


def _replies_by_run(store: Store) -> dict[str, list[OutboxItem]]:
    replies: dict[str, list[OutboxItem]] = defaultdict(list)
    for item in store.items:
        if item.channel in CUSTOMER_CHANNELS and not item.automatic and item.run_id:
            replies[item.run_id].append(item)
    return replies


def _answer_of(
    message: Message,
    store: Store,
    replies: dict[str, list[OutboxItem]],
    arrived: set[str],
) -> str:
    """'answered', 'lost SIDE: why', or another outcome that is not a loss (it is reported)."""
    if message.handled_at is None:
        return "lost store: recorded, never answered"
    if message.run_id is None:
        return "passed to staff"
    found = replies.get(message.run_id, [])
    if not found:
        run = store.runs.get(message.run_id)
        if run is not None and run.status == "handed_off":
            return f"handed off: {run.stop_reason}"
        if run is not None and run.trigger != "inbound":
            return f"lost store: marked answered by a proactive ({run.trigger}) run"
        return "lost store: answered by a run that queued no reply"
    statuses = {item.status for item in found}
    if "sent" in statuses:
        sent = [i for i in found if i.status == "sent"]
        if all(_ref(i) in arrived for i in sent):
            return "answered"
        return "lost servers: recorded as sent, never at the server"
    if "unknown" in statuses:
        return "reply unknown (ambiguous)"
    if "failed" in statuses:
        return "reply failed (staff alerted)"
    return "reply still queued at the end"


def _ref(item: OutboxItem) -> str:
    """How the server side names an item: Telegram's `chat:id`, or (email) the item id."""
    return item.external_id if item.channel == "telegram" and item.external_id else str(item.id)


def _check_order(
    figures: Figures, inbound: list[Inbound], at_servers: dict[Customer, list[Delivered]]
) -> None:
    """The servers' own view: a customer's last messages with no reply after them."""
    given = Counter(m.customer for m in inbound)
    for customer, total in given.items():
        replies = [d.follows for d in at_servers.get(customer, []) if d.kind == "reply"]
        unanswered = total - max(replies, default=0)
        if unanswered > 0:
            figures.lost["servers: no reply after them"] += unanswered


def _count_deliveries(
    figures: Figures,
    store: Store,
    items: list[OutboxItem],
    at_servers: dict[Customer, list[Delivered]],
) -> None:
    """Each item at the server at most once; per customer, as many as the store sent."""
    expected: dict[tuple[Customer, Kind], Counter[str]] = defaultdict(Counter)
    for item in items:
        customer = store.customer_of.get(item.contact_id or 0)
        if customer is not None:
            expected[(customer, kind_of(item.text))][item.status] += 1
    for customer, deliveries in at_servers.items():
        by_item = Counter(d.outbox_id for d in deliveries if d.outbox_id is not None)
        figures.duplicated["servers: email accepted twice"] += sum(n - 1 for n in by_item.values())
        for kind in KINDS:
            got = sum(d.kind == kind for d in deliveries)
            statuses = expected[(customer, kind)]
            if got > statuses["sent"] + statuses["unknown"]:
                figures.duplicated[f"servers: more {kind} messages than sent"] += (
                    got - statuses["sent"] - statuses["unknown"]
                )
            if got < statuses["sent"] or got > statuses["sent"] + statuses["unknown"]:
                figures.contacts_mismatched.append(
                    f"{customer.first_name} {kind}: {got} at the server, {dict(statuses)} stored"
                )
    _count_proactive_twice(figures, store, items)


def _count_proactive_twice(figures: Figures, store: Store, items: list[OutboxItem]) -> None:
    """One automatic message per wake-up (a job slot's for one contact, an event's): a
    second one is a duplicate. Each item is put down to the wake-ups of its run whose
    trigger writes its text (a check-in: the job's; a ping: the event's)."""
    writes = {"check-in": "job", "ping": "event"}
    per_wakeup: Counter[int] = Counter()
    for item in items:
        if item.automatic and item.status in SENT_OR_MAYBE:
            wanted = writes.get(kind_of(item.text))
            for wakeup, trigger in set(store.woken_by.get(item.run_id or "", [])):
                per_wakeup[wakeup] += trigger == wanted
    figures.duplicated["store: automatic message twice for one wake-up"] += sum(
        n - 1 for n in per_wakeup.values() if n > 1
    )
    figures.runs_adopted = sum(
        len({wakeup for wakeup, _ in woken}) > 1 for woken in store.woken_by.values()
    )


def _count_unknown(
    figures: Figures,
    store: Store,
    items: list[OutboxItem],
    at_servers: dict[Customer, list[Delivered]],
    staff: dict[str, str],
) -> None:
    """The ambiguous window, and the policy for it: alerted, never resent, marked."""
    handed = [i for i in items if i.status in ("sent", "unknown", "failed")]
    figures.sends = len(handed)
    unknown = [i for i in items if i.status == "unknown"]
    figures.unknown = Counter(i.channel for i in unknown)
    figures.unknown_staff_posts = sum(
        1 for i in store.items if i.channel == STAFF_CHANNEL and i.status == "unknown"
    )
    alerts = {i.idempotency_key: i for i in store.items if i.channel == STAFF_CHANNEL}
    email_at_server = Counter(
        d.outbox_id for found in at_servers.values() for d in found if d.outbox_id is not None
    )
    for item in unknown:
        alert = alerts.get(f"delivery:{item.id}")
        if alert is not None and alert.status == "sent" and alert.external_id in staff:
            figures.alerted += "will not be sent again" in staff[alert.external_id]
        elif alert is not None and alert.status == "unknown":
            figures.alert_unknown += 1
        figures.marked += store.uncertain_marked.get(item.id, False)
        if item.channel == "email":
            figures.unknown_reached["email"] += email_at_server[item.id] > 0
            figures.resent += email_at_server[item.id] > 1
    figures.unknown_reached["telegram"] += _telegram_unknown_reached(store, unknown, at_servers)


def _telegram_unknown_reached(
    store: Store, unknown: list[OutboxItem], at_servers: dict[Customer, list[Delivered]]
) -> int:
    """Telegram messages at the server that no sent item accounts for, up to the number of
    unknown items of their chat and kind (any more would be counted as duplicates)."""
    sent_refs = {i.external_id for i in store.items if i.status == "sent" and i.external_id}
    reached = 0
    for customer, deliveries in at_servers.items():
        if customer.channel != "telegram":
            continue
        for kind in KINDS:
            extra = sum(d.kind == kind and d.ref not in sent_refs for d in deliveries)
            maybe = sum(
                i.contact_id is not None
                and store.customer_of.get(i.contact_id) == customer
                and kind_of(i.text) == kind
                for i in unknown
            )
            reached += min(extra, maybe)
    return reached
