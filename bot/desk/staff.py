"""The staff desk, independent of where staff sit: what they are told, and what they can do.

Everything staff see goes to the outbox on the `staff` channel, addressed to the contact it is
about (`contact:ID`); the channel that serves staff (the Telegram staff group) decides where
that lands. Staff replies, notes, close/resume and confirmation decisions come back here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.core.safe_text import visible, visible_line
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.contacts import address_on, get_contact
from bot.store.conversations import get_conversation
from bot.store.db import Tx
from bot.store.deals import get_confirmation, get_deal, move_stage, open_deal
from bot.store.handoffs import latest_conversation
from bot.store.inbox import recent_messages
from bot.store.models import (
    Contact,
    Conversation,
    Message,
    OutboxItem,
    PendingConfirmation,
)
from bot.store.scores import latest_change
from bot.store.types import utcnow

STAFF_CHANNEL = "staff"
LAST_MESSAGES = 6
BACKED_UP_SECONDS = 5.0
"""A staff post still waiting this long means posts are backed up: a copy goes out at once
otherwise."""
JOINED_LONGEST = 3500
"""Characters a post of joined copies may grow to: well within any staff channel's message."""


def staff_recipient(contact_id: int | None) -> str:
    return f"contact:{contact_id}" if contact_id is not None else "group"


async def notify_staff(
    session: Tx,
    *,
    key: str,
    conversation_id: int | None,
    contact_id: int | None,
    text: str,
    kind: str,
    meta: dict[str, Any] | None = None,
) -> OutboxItem:
    """Queue a post about the contact for staff (summary, copy, confirmation, alert).

    With no contact the post goes to the staff group itself (alerts about the bot). Controls
    and direction overrides in `text` are shown, not acted on (`bot.safe_text`).
    """
    item, _ = await outbox.enqueue(
        session,
        key=key,
        conversation_id=conversation_id,
        contact_id=contact_id,
        channel=STAFF_CHANNEL,
        recipient=staff_recipient(contact_id),
        text=visible(text),
        author="system",
        meta={"kind": kind, **(meta or {})},
        to_contact=False,
    )
    return item


async def alert_staff(session: Tx, item: OutboxItem, what: str, error: str) -> None:
    """Tell staff about a customer message that did not (or may not) arrive; never resent."""
    if item.channel == STAFF_CHANNEL:
        return  # a failing staff channel cannot report on itself; the log and audit have it
    excerpt = item.text if len(item.text) <= 300 else item.text[:299] + "…"
    await notify_staff(
        session,
        key=f"delivery:{item.id}",
        conversation_id=item.conversation_id,
        contact_id=item.contact_id,
        kind="alert",
        text=f"⚠️ A message to this customer on {item.channel} {what} ({error}). "
        f"It will not be sent again automatically:\n“{excerpt}”",
    )


def _who(contact: Contact) -> str:
    handles = [
        f"@{contact.telegram_username}" if contact.telegram_username else None,
        contact.email,
        contact.phone,
    ]
    return " · ".join(visible_line(part) for part in [contact.name, *(h for h in handles if h)])


def _line(message: Message) -> str:
    """One line per message, so a message cannot add lines that look like the bot's own."""
    who = {"contact": "customer", "agent": "agent", "staff": "staff"}.get(message.author, "bot")
    text = message.text if len(message.text) <= 300 else message.text[:299] + "…"
    return f"{message.created_at:%H:%M} {who}: {visible_line(text)}"


def topic_title(contact: Contact) -> str:
    """The title of the contact's staff topic (Telegram allows 128 characters)."""
    name = visible_line(contact.name or f"Contact {contact.id}")
    return name[:100] + f" #{contact.id}"


async def summary_text(session: Tx, conversation_id: int, reason: str, summary: str) -> str:
    """The handoff summary: who, channel, score, deal, why, the agent's summary, last messages.

    What came from outside is shown with its controls visible, one line per field.
    """
    conversation = await get_conversation(session, conversation_id)
    contact = await get_contact(session, conversation.contact_id)
    deal = await open_deal(session, contact.id)
    history = await recent_messages(session, conversation_id, LAST_MESSAGES)
    lines = [
        f"🔔 Handoff: {_who(contact)}",
        f"Channel: {conversation.channel} · score {contact.lead_score}"
        + (f" · tags {visible_line(', '.join(contact.tags))}" if contact.tags else "")
        + (f" · category {visible_line(conversation.category)}" if conversation.category else ""),
        f"Deal: {visible_line(deal.title)} ({deal.stage})" if deal else "Deal: none",
        f"Why: {visible_line(reason)}",
    ]
    scored = await latest_change(session, contact.id)
    if scored is not None and scored.reasons:
        why = visible_line("; ".join(scored.reasons))
        lines.append(f"Score {scored.new_score} because: {why}")
    if summary:
        lines.append(f"Agent's summary: {visible(summary)}")
    if contact.custom_fields:
        answers = "; ".join(f"{k}: {v}" for k, v in contact.custom_fields.items())
        lines.append("Answers: " + visible_line(answers))
    if history:
        lines += ["", "Last messages:", *(_line(m) for m in history)]
    lines += [
        "",
        "Reply here to answer the customer. /note TEXT for an internal note, "
        "/resume to give the conversation back to the agent, /close to end it.",
    ]
    return "\n".join(lines)


async def copy_to_staff(session: Tx, message: Message) -> None:
    """Show staff a customer message that arrived while the conversation is with them.

    A Telegram message is copied as it is (media and all), unless its text has controls to
    show: a copy would carry them, so staff get our text of it instead.
    """
    telegram = message.meta.get("telegram") if message.meta else None
    meta: dict[str, Any] = {}
    if telegram and not telegram.get("edited") and visible(message.text) == message.text:
        meta = {"copy_from_chat": telegram["chat_id"], "copy_message_id": telegram["message_id"]}
    text = f"💬 {message.text}" if message.text else "💬 (attachment)"
    if message.text and message.attachments and not meta:
        text += " (with an attachment, not shown here)"
    if message.text and not message.attachments:
        meta["joinable"] = True  # plain text: shown as our text, it can share a post
        if await _join_a_waiting_copy(session, message, visible(text)):
            return
    await notify_staff(
        session,
        key=f"copy:{message.id}",
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        text=text,
        kind="copy",
        meta=meta,
    )


async def _join_a_waiting_copy(session: Tx, message: Message, text: str) -> bool:
    """When staff posts are backed up (the group's 20 a minute shared by every topic, under
    many handoffs at once), a customer's next lines join the copy of theirs that still
    waits, so each topic takes one post for them, not one per line."""
    if message.conversation_id is None:
        return False
    return await outbox.join_waiting(
        session,
        channel=STAFF_CHANNEL,
        conversation_id=message.conversation_id,
        text=text,
        queued_before=utcnow() - timedelta(seconds=BACKED_UP_SECONDS),
        longest=JOINED_LONGEST,
        meta={"kind": "copy", "joinable": True, "joined": True},
    )


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A person on the team, as the audit trail names them."""

    actor: str
    name: str


@dataclass(frozen=True, slots=True)
class Reach:
    """Where a message to a contact goes: their latest conversation, their address on it."""

    conversation: Conversation
    address: str


async def reach(session: Tx, contact_id: int) -> Reach | str:
    """The contact's latest conversation and their address on its channel; or, as text, why
    a message cannot reach them."""
    conversation = await latest_conversation(session, contact_id)
    if conversation is None:
        return "no conversation with this contact"
    address = await address_on(session, contact_id, conversation.channel)
    if address is None:
        return f"the contact has no {conversation.channel} address"
    return Reach(conversation, address)


async def reply_to_customer(
    session: Tx,
    audit: AuditLog,
    *,
    contact_id: int,
    text: str,
    key: str,
    staff: StaffMember,
) -> str:
    """Send a staff member's reply to the customer on their own channel; returns a status."""
    found = await reach(session, contact_id)
    if isinstance(found, str):
        return found
    conversation, address = found.conversation, found.address
    if conversation.state == "bot":
        conversation.state = "handed_off"  # a person answering takes the conversation over
    _, created = await outbox.enqueue(
        session,
        key=key,
        conversation_id=conversation.id,
        contact_id=contact_id,
        channel=conversation.channel,
        recipient=address,
        text=text,
        author="staff",
        meta={"staff": staff.actor, "staff_name": staff.name},
    )
    if created:
        await audit.append(
            session,
            "staff_reply",
            {"text": text, "to": conversation.channel},
            actor=staff.actor,
            conversation_id=conversation.id,
        )
    return "sent" if created else "already sent"


async def set_conversation_state(
    session: Tx, audit: AuditLog, *, contact_id: int, state: str, staff: StaffMember
) -> str:
    conversation = await latest_conversation(session, contact_id)
    if conversation is None:
        return "no conversation with this contact"
    before, conversation.state = conversation.state, state
    conversation.updated_at = utcnow()
    if state == "bot":
        conversation.current_agent = None  # routing chooses afresh
    await audit.append(
        session,
        f"conversation_{state}",
        {"from": before},
        actor=staff.actor,
        conversation_id=conversation.id,
    )
    return {"bot": "handed back to the agent", "closed": "closed"}.get(state, state)


async def add_note(
    session: Tx, audit: AuditLog, *, contact_id: int, text: str, staff: StaffMember
) -> None:
    """An internal note: audited and kept on the contact, never sent to the customer."""
    contact = await get_contact(session, contact_id)
    notes = list((contact.custom_fields or {}).get("staff_notes", []))
    notes.append({"by": staff.name, "at": utcnow().isoformat(timespec="minutes"), "text": text})
    contact.custom_fields = {**(contact.custom_fields or {}), "staff_notes": notes[-50:]}
    conversation = await latest_conversation(session, contact_id)
    await audit.append(
        session,
        "staff_note",
        {"text": text},
        actor=staff.actor,
        conversation_id=conversation.id if conversation else None,
    )


async def decide(
    session: Tx,
    audit: AuditLog,
    *,
    confirmation_id: int,
    approve: bool,
    staff: StaffMember,
) -> str:
    """Approve (and carry out) or reject a pending destructive action, once."""
    pending = await get_confirmation(session, confirmation_id)
    if pending is None:
        return "unknown request"
    if pending.status != "pending":
        return f"already {pending.status} by {pending.decided_by}"
    pending.status = "approved" if approve else "rejected"
    pending.decided_by, pending.decided_at = staff.name, utcnow()
    if approve:
        await _carry_out(session, pending)
    await audit.append(
        session,
        "confirmation_decided",
        {
            "id": pending.id,
            "action": pending.action,
            "arguments": pending.arguments,
            "decision": pending.status,
        },
        actor=staff.actor,
        run_id=pending.run_id,
        conversation_id=pending.conversation_id,
    )
    return pending.status


async def _carry_out(session: Tx, pending: PendingConfirmation) -> None:
    if pending.action == "update_deal_stage":
        deal = await get_deal(session, pending.arguments.get("deal_id") or -1)
        if deal is not None:
            await move_stage(session, deal, pending.arguments["stage"])
        return
    raise ValueError(f"no handler for confirmed action {pending.action!r}")
