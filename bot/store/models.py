"""The relational schema: one class per table, shared by SQLite and PostgreSQL.

Alembic migrations under `bot/store/migrations` create these tables; the models here are the
source the migrations were generated from and must stay in step with them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.store.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
Money = Numeric(14, 6)
BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements only INTEGER


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Contact(Base):
    """A person the business talks to, on any channel."""

    __tablename__ = "contacts"
    # Leads are matched by email in any case (imports, the API, email intake): without this
    # each lookup reads every contact.
    __table_args__ = (Index("ix_contacts_email_lower", func.lower(text("email"))),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    telegram_username: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(default=list)
    lead_score: Mapped[int] = mapped_column(default=0)
    owner: Mapped[str | None] = mapped_column(String(200))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lead_source: Mapped[str | None] = mapped_column(String(200))
    assigned_agent: Mapped[str | None] = mapped_column(String(80))
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    """The contact's id in another system (a CRM, a billing system) that sends us events."""
    timezone: Mapped[str | None] = mapped_column(String(64))
    """IANA zone for quiet hours; unset: BUSINESS_TIMEZONE."""
    opted_out_at: Mapped[datetime | None] = mapped_column()
    """When they wrote "stop": no automatic message reaches them after it, ever."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChannelIdentity(Base):
    """How a contact is addressed on one channel (chat id, email address, console name)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "address"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """One contact on one channel. Only one conversation per (contact, channel) is open.

    A lease named `conversation:ID` (table `leases`) gives one worker, in any process, a turn.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_open",
            "contact_id",
            "channel",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="bot")  # bot | handed_off | closed
    current_agent: Mapped[str | None] = mapped_column(String(80))
    subject: Mapped[str | None] = mapped_column(String(500))
    category: Mapped[str | None] = mapped_column(String(40))
    """What it is about, as an agent tagged it: one of its definition's `categories`."""
    last_message_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    """A message in or out. Inbound ones wait with `handled_at` NULL until a run takes them."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index("ix_messages_pending", "conversation_id", "handled_at"),
        # Proactive conditions ask "has this contact written since...?" across channels.
        Index("ix_messages_contact", "contact_id", "direction", "created_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    author: Mapped[str] = mapped_column(String(20))  # contact | agent | staff | system
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[str]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column()
    run_id: Mapped[str | None] = mapped_column(String(32))


class Deal(Base):
    """An opportunity in the pipeline."""

    __tablename__ = "deals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300), default="")
    stage: Mapped[str] = mapped_column(String(40), default="new")
    value: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    owner: Mapped[str | None] = mapped_column(String(200))
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # A contact's open deal is read on every turn (routing, perception, tools) and by the
    # hygiene scans; without it each read scans every deal.
    __table_args__ = (Index("ix_deals_contact_stage", "contact_id", "stage", "last_activity_at"),)


class Meeting(Base):
    """A meeting booked with a contact."""

    __tablename__ = "meetings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime] = mapped_column()
    duration_minutes: Mapped[int] = mapped_column(default=30)
    topic: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(20), default="booked")
    run_id: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(200))
    """Whose calendar it is on: the deal's or contact's owner, else the team."""
    uid: Mapped[str] = mapped_column(String(255), default=lambda: f"{new_id()}@crmbot")
    """The iCalendar UID: the same in every invite, update and cancellation of the meeting."""
    sequence: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """The iCalendar SEQUENCE: 0 when booked, one more at every move and at the cancellation."""
    reminded_sequence: Mapped[int | None] = mapped_column()
    """The `sequence` the contact's reminder was queued for; None: no reminder yet."""
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When it was booked, moved or cancelled."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Double booking is prevented by `MeetingSlot` rows, not by an index here: an index on
    # (owner, start) lets two overlapping meetings with different starts both in.
    __table_args__ = (
        Index("uq_meetings_uid", "uid", unique=True),
        Index("ix_meetings_owner_starts", "owner", "starts_at"),
        Index("ix_meetings_status_starts", "status", "starts_at"),
    )


class MeetingSlot(Base):
    """A quarter hour a booked meeting takes from its owner's calendar, one row each.

    Written in the booking's transaction, deleted when the meeting is cancelled and rewritten
    when it moves: two meetings that overlap anywhere share a row's key, so of two
    transactions racing to book them the second fails on the primary key, on any database.
    """

    __tablename__ = "meeting_slots"
    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )


class ScoreChange(Base):
    """A contact's lead score moved, with the rubric lines that made the new score."""

    __tablename__ = "score_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    old_score: Mapped[int] = mapped_column()
    new_score: Mapped[int] = mapped_column()
    reasons: Mapped[list[str]] = mapped_column(default=list)
    """One line per rubric rule that gave points, e.g. "team_size 40 in 10-99: +30"."""
    run_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentDefinitionRow(Base):
    """An agent definition as validated YAML/JSON (`agents.definition.AgentDefinition`)."""

    __tablename__ = "agent_definitions"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentRun(Base):
    """One run of an agent: who started it, how far it got and how it ended."""

    __tablename__ = "agent_runs"
    __table_args__ = (Index("ix_agent_runs_agent_started", "agent_name", "started_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    agent_name: Mapped[str] = mapped_column(String(80))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    trigger: Mapped[str] = mapped_column(String(20))  # inbound | schedule | event | test
    started_by: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="running")
    stop_reason: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(default=0)
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class ToolInvocation(Base):
    """The result of a state-changing tool call, keyed so that a replay does nothing twice."""

    __tablename__ = "tool_invocations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    tool: Mapped[str] = mapped_column(String(60))
    arguments: Mapped[dict[str, Any]] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """An append-only, hash-chained record of something the system saw, decided or did.

    Rows are chained per conversation (`chain` is `conversation:ID`, or `system` for events
    about no conversation): `seq` counts 1, 2, 3... within the chain and `prev_hash` is the
    previous row's `hash`, so appends in different conversations never wait on each other.
    Rows written before chains existed form the chain `global`.
    """

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("chain", "seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column()
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    conversation_id: Mapped[int | None] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column()
    chain: Mapped[str] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChain(Base):
    """The tip of one chain; appending locks only this row, so only its own conversation's
    appends queue behind each other. `sealed_seq` is how far the last seal covered it."""

    __tablename__ = "audit_chains"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    sealed_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditSeal(Base):
    """A periodic, hash-chained record of chain tips, so rows cut from the end of any chain
    (even a whole chain with its tip) are found; append-only like the events."""

    __tablename__ = "audit_seals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column()
    heads: Mapped[dict[str, Any]] = mapped_column()
    """{chain: [seq, hash]} for every chain that grew since the previous seal."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxItem(Base):
    """A message waiting to be sent. `idempotency_key` makes enqueueing it twice a no-op.

    status: pending -> sending (claimed right before its own request) -> sent | pending (a
    retry) | failed | unknown; a `sending` item whose worker died is `unknown` and is never
    retried without a person deciding (the states are described in `bot/store/outbox.py`).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "channel", "status", "next_attempt_at"),
        Index("ix_outbox_automatic", "automatic", "contact_id", "sent_at"),
        Index("ix_outbox_recipient_claimed", "channel", "recipient", "claimed_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    """None for a post about no conversation (an admin's reply, an alert to the staff group)."""
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))
    author: Mapped[str] = mapped_column(String(20), default="agent")
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    automatic: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Sent with no message from the contact to answer (a scheduled or event run, a follow-up):
    the proactive rules (`bot/desk/proactive.py`) are checked right before it is claimed."""
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()
    """When the item's last request was about to leave (its claim): a channel's spacing
    between messages to one recipient counts from here (see `outbox.claim`)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class HandoffRecord(Base):
    """A conversation passed to people, with why and the agent's summary."""

    __tablename__ = "handoffs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column()


class PendingConfirmation(Base):
    """A destructive action an agent asked for; staff approve or reject it."""

    __tablename__ = "pending_confirmations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(32))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    action: Mapped[str] = mapped_column(String(60))
    arguments: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelCursor(Base):
    """A channel's resume point (last Telegram update id, IMAP UIDVALIDITY and UID)."""

    __tablename__ = "channel_cursors"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StaffThread(Base):
    """Where a contact's handoffs are discussed: a forum topic (or the group itself)."""

    __tablename__ = "staff_threads"
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    """None when the group has no topics: staff reply to the posts instead."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffPost(Base):
    """A message we posted in the staff group about a contact, so replies to it route back."""

    __tablename__ = "staff_posts"
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    confirmation_id: Mapped[int | None] = mapped_column(
        ForeignKey("pending_confirmations.id", ondelete="SET NULL")
    )
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id", ondelete="SET NULL"))
    """The draft this post shows staff: a reply to the post is the draft's edited text."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbEmbedding(Base):
    """A knowledge-base passage's embedding under one model (semantic search, optional)."""

    __tablename__ = "kb_embeddings"
    chunk_id: Mapped[int] = mapped_column(
        ForeignKey("kb_chunks.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    """float32, little-endian, normalised to length 1."""


class Draft(Base):
    """Words an agent wrote that wait for a person: a support answer the code would not send
    on its own (no citation, too little confidence, pricing or contract review), or an
    outbound opener. Nothing in a draft reaches the contact until staff approve or edit it."""

    __tablename__ = "drafts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    """Idempotency key: the same run, or the same research row, drafts once."""
    kind: Mapped[str] = mapped_column(String(20))
    """reply (an answer to a customer's question) | outreach (a first message to a prospect)"""
    status: Mapped[str] = mapped_column(String(20), default="pending")
    """pending | approved | edited | rejected; approved and edited drafts were sent."""
    agent: Mapped[str] = mapped_column(String(63))
    run_id: Mapped[str | None] = mapped_column(String(32))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(20))
    question: Mapped[str] = mapped_column(Text, default="")
    """What the customer asked (a reply), or what the opener was built from (outreach)."""
    text: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(200))
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """The knowledge-base passages the draft rests on: article id, title, url, score."""
    sources: Mapped[list[str]] = mapped_column(default=list)
    """Outreach: the URLs the opener was grounded in."""
    confidence: Mapped[float | None] = mapped_column(Float)
    final_text: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    article_id: Mapped[int | None] = mapped_column(
        ForeignKey("kb_articles.id", ondelete="SET NULL")
    )
    """The article an edited answer was saved as ("Save to knowledge base")."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_drafts_status", "status", "kind"),)


class RawEmail(Base):
    """An email exactly as the mail server delivered it, kept beside what it became.

    `message_id` is the inbound message it was recorded as; None for mail that was not
    (bounces, auto-replies nobody answers, list mail, our own). One row per mailbox position.
    """

    __tablename__ = "raw_emails"
    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    mailbox: Mapped[str] = mapped_column(String(400))
    """`user@host/folder` it was read from."""
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    header_message_id: Mapped[str | None] = mapped_column(String(300))
    verdict: Mapped[str] = mapped_column(String(20))
    """answer | auto_reply | bulk | list | bounce | own"""
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A named turn that one worker holds at a time (a conversation, the Telegram poller).

    The holder's heartbeat pushes `expires_at` forward every few seconds; once heartbeats stop
    (the worker died) the lease lapses within `LEASE_SECONDS` and another worker takes it.
    """

    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_owner", "owner"),)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandledUpdate(Base):
    """A channel update (Telegram `update_id`, an event id) that has been applied once.

    Written in the same transaction as the update's effects, so a replayed update finds its
    key and is skipped: exactly once, whatever the update's kind.
    """

    __tablename__ = "handled_updates"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """Input that could not be parsed or stored, kept whole with the error, so nothing is lost.

    The channel's cursor moves past it; `crmbot deadletters retry ID` feeds it in again.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_status", "status", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(40))
    """telegram | email"""
    kind: Mapped[str] = mapped_column(String(60))
    """What failed, e.g. update_unparsable, update_unstorable, email_unparsable."""
    ref: Mapped[str | None] = mapped_column(String(300))
    """Where it came from: the update id, or mailbox and UID."""
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of source and payload: the same input is kept once, however often it is seen."""
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="new")
    """new | retried (stored on retry) | failed_again"""
    seen: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retried_at: Mapped[datetime | None] = mapped_column()


class StaffMember(Base):
    """A person on the team: a deal's `owner` is one of their names."""

    __tablename__ = "staff_members"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """Where their own messages go (stale-deal lists); unset: the staff group."""
    hours: Mapped[str | None] = mapped_column(String(200))
    """Their working hours in BUSINESS_HOURS format; unset: BUSINESS_HOURS."""
    email: Mapped[str | None] = mapped_column(String(320))
    """The organizer address of their meetings' invites; unset: EMAIL_FROM."""
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The secret in their calendar feed's URL (`GET /calendar/TOKEN.ics`); None: no feed."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A scheduled trigger of an agent, derived from its definition: the store of record for
    what is due (APScheduler only wakes the process at the right time)."""

    __tablename__ = "jobs"
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    """The agent's name, with `#2`, `#3`... for its second and later schedule triggers."""
    agent_name: Mapped[str] = mapped_column(String(80), index=True)
    trigger: Mapped[dict[str, Any]] = mapped_column()
    trigger_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of `trigger`: a changed trigger reschedules the job."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    """False while the agent is disabled or the trigger is gone from its definition."""
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    """Paused by a person (`crmbot jobs pause`)."""
    next_fire_at: Mapped[datetime | None] = mapped_column()
    last_fire_at: Mapped[datetime | None] = mapped_column()
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_result: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobFiring(Base):
    """One firing of a job at one scheduled time; unique, so it runs once in any process."""

    __tablename__ = "job_firings"
    __table_args__ = (UniqueConstraint("job_name", "scheduled_for"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(String(120))
    scheduled_for: Mapped[datetime] = mapped_column()
    manual_by: Mapped[str | None] = mapped_column(String(200))
    """Who fired it by hand (`crmbot jobs run`); None for the clock."""
    status: Mapped[str] = mapped_column(String(20), default="running")
    """running | done | failed"""
    worker: Mapped[str] = mapped_column(String(200))
    claimed_until: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactEvent(Base):
    """Something that happened to a contact elsewhere (trial.started, active_day...)."""

    __tablename__ = "contact_events"
    __table_args__ = (Index("ix_contact_events_contact", "contact_id", "type", "occurred_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    """The sender's idempotency key: the same key twice is stored once."""
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(40))
    """http | cli | system"""
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class Wakeup(Base):
    """A proactive run waiting for its time: one contact, one agent trigger.

    Made by a job firing (one per matching contact), by an event (at once or after a delay)
    or by a run that asked a question (a follow-up). `key` makes each one exist once, so a
    firing or an event that is processed twice wakes nobody twice.
    """

    __tablename__ = "wakeups"
    __table_args__ = (
        Index("ix_wakeups_due", "status", "due_at"),
        Index("ix_wakeups_contact", "contact_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    agent_name: Mapped[str] = mapped_column(String(80))
    trigger: Mapped[dict[str, Any]] = mapped_column()
    """The trigger (or follow-up rule) that made it, as written in the definition."""
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"))
    cause: Mapped[dict[str, Any]] = mapped_column()
    """What started it: {"job", "scheduled_for"} or {"event_id", "event"} or {"follow_up"}."""
    since: Mapped[datetime] = mapped_column()
    """Conditions (replied, events) count from here: the event's or the firing's time."""
    cancel_on_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    """pending | running | done | skipped | cancelled"""
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column()
    result: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class Switch(Base):
    """An account-wide switch a person must turn back (the proactive breaker)."""

    __tablename__ = "switches"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    tripped: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbArticle(Base):
    """A help article of the knowledge base, imported from a file (`crmbot kb import`)."""

    __tablename__ = "kb_articles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    """Its key: the file's absolute path (a re-import matches on it), or another unique name."""
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KbChunk(Base):
    """One searchable passage of an article: a section under a heading, of bounded size.

    Not modelled here: the full-text index over `heading` and `text`, which each database
    builds its own way (migration 0009, `bot.store.kb`), and which `include_name` hides from
    the comparison of models and schema.
    """

    __tablename__ = "kb_chunks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column()
    heading: Mapped[str] = mapped_column(String(1000), default="")
    """The heading trail, article title first: "Billing › Invoices"."""
    text: Mapped[str] = mapped_column(Text)


FULL_TEXT_TABLES = "kb_chunks_fts"
"""SQLite: the FTS5 table and the shadow tables it keeps (kb_chunks_fts_data, ...)."""
FULL_TEXT_COLUMNS = frozenset({("kb_chunks", "search_vector")})
"""PostgreSQL: the generated tsvector column."""
FULL_TEXT_INDEXES = frozenset({"ix_kb_chunks_search_vector"})
"""PostgreSQL: its GIN index."""


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name` filter: compare everything but the full-text structures that
    only one database has (the models cannot describe an FTS5 table or a tsvector).
    `parent_names` is Alembic's mapping of the object's table (`table_name`) and schema."""
    if type_ == "table":
        return not (name or "").startswith(FULL_TEXT_TABLES)
    if type_ == "column":
        return (parent_names.get("table_name"), name) not in FULL_TEXT_COLUMNS
    if type_ == "index":
        return name not in FULL_TEXT_INDEXES
    return True
