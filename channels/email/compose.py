"""Composing an outbound email: our Message-ID, the thread's headers, plain text and HTML.

The Message-ID is derived from the outbox item alone (`<outbox-ID-HASH@our-domain>`), so a
retry after a crash carries the same id and mail clients and servers see one message. A reply
goes into the thread of the contact's latest email: `In-Reply-To` its Message-ID,
`References` its references plus it, and its subject with one `Re:`.

A meeting invite (an item whose meta carries one, `bot.core.ics`) is sent the way calendar
services send theirs: the text and HTML alternatives plus a `text/calendar; method=REQUEST`
(or `CANCEL`) alternative, which mail clients show as an invitation with its buttons, and the
same document attached as `invite.ics` for clients that only offer attachments.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from bot.core import ics
from bot.store.conversations import find_conversation
from bot.store.db import Tx
from bot.store.inbox import latest_inbound
from bot.store.models import OutboxItem
from bot.store.types import utcnow

CHANNEL = "email"
MAX_REFERENCES = 20
_OUR_MESSAGE_ID = re.compile(r"<outbox-(\d+)-([0-9a-f]{12})@[^<>\s]+>")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who our mail is from."""

    address: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True, slots=True)
class Thread:
    """Where a message to the contact belongs: after their latest email, if there is one."""

    subject: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    to_name: str = ""

    @property
    def is_reply(self) -> bool:
        return self.in_reply_to is not None


def _digest(item: OutboxItem) -> str:
    return hashlib.sha256(item.idempotency_key.encode()).hexdigest()[:12]


def message_id_for(item: OutboxItem, domain: str) -> str:
    """Our stable Message-ID for `item`: the same on every attempt to send it."""
    return f"<outbox-{item.id}-{_digest(item)}@{domain}>"


def our_message_ids(text: str) -> dict[str, int]:
    """Message-IDs of ours anywhere in `text`, with the outbox item id each names."""
    return {m.group(0): int(m.group(1)) for m in _OUR_MESSAGE_ID.finditer(text)}


def is_message_id_of(item: OutboxItem, message_id: str) -> bool:
    """Whether `message_id` is the one `item` is (or will be) sent with, not a forgery."""
    return message_id.startswith(f"<outbox-{item.id}-{_digest(item)}@")


async def thread_of(session: Tx, conversation_id: int | None) -> Thread:
    """The thread of the conversation's latest answerable email from the contact."""
    if conversation_id is None:  # a first email about no conversation (e.g. an approved draft)
        return Thread("", None, (), "")
    latest = await latest_inbound(session, conversation_id, CHANNEL, limit=10)
    inbound = [m.meta.get("email", {}) for m in latest]
    answerable = [m for m in inbound if m.get("kind") == "answer"]
    chosen: dict[str, Any] = (answerable or inbound or [{}])[0]
    subject = chosen.get("subject") or ""
    if not subject:
        conversation = await find_conversation(session, conversation_id)
        subject = (conversation.subject if conversation else None) or ""
    references = tuple(chosen.get("references") or ())
    message_id = chosen.get("message_id")
    if message_id:
        references = (*[r for r in references if r != message_id], message_id)
    return Thread(subject, message_id, references, chosen.get("from_name") or "")


def reply_subject(subject: str, fallback: str) -> str:
    """`Re: subject` with exactly one prefix; `fallback` when there is no subject."""
    subject = " ".join(subject.split())
    if not subject:
        return fallback
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def text_to_html(text: str) -> str:
    """A simple HTML alternative: paragraphs and line breaks, everything escaped."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "\n".join("<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs)
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"


def compose(item: OutboxItem, thread: Thread, sender: Sender, *, automatic: bool) -> EmailMessage:
    """The MIME message for `item`; `automatic` marks agent and system mail (RFC 3834)."""
    message = EmailMessage()
    meta = item.meta or {}
    # A message may name its own sender and addressee (an approved outreach draft goes out
    # under its deal owner's name) and, when it starts a thread, its own subject.
    from_name = str(meta.get("from_name") or "") or sender.name
    message["From"] = Address(display_name=from_name, addr_spec=sender.address)
    to_name = thread.to_name or str(meta.get("to_name") or "")
    message["To"] = Address(display_name=to_name, addr_spec=item.recipient)
    fallback = f"A message from {sender.name or sender.domain}"
    first_subject = " ".join(str(meta.get("subject") or "").split())
    if first_subject and not thread.is_reply:
        message["Subject"] = first_subject
    else:
        message["Subject"] = reply_subject(thread.subject, fallback)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id_for(item, sender.domain)
    if thread.in_reply_to:
        message["In-Reply-To"] = thread.in_reply_to
    if thread.references:
        kept = thread.references
        if len(kept) > MAX_REFERENCES:  # the root, then the most recent ones (RFC 5322 3.6.4)
            kept = (kept[0], *kept[-(MAX_REFERENCES - 1) :])
        message["References"] = " ".join(kept)
    if automatic:
        message["Auto-Submitted"] = "auto-replied" if thread.is_reply else "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer with an OOF
    message.set_content(item.text)
    message.add_alternative(text_to_html(item.text), subtype="html")
    invite = ics.read_invite_meta(item.meta)
    if invite is not None:
        add_invite(message, *invite, organizer=sender.address)
    return message


def add_invite(
    message: EmailMessage, event: ics.MeetingEvent, method: ics.Method, *, organizer: str
) -> None:
    """Add the meeting's iCalendar document to a text-and-HTML message; `organizer` is the
    address an organizer without one of their own writes from (ours)."""
    document = ics.invite(event, method, fallback_organizer=organizer)
    # As bytes, so the document keeps its CRLF line ends exactly (RFC 5545) inside base64.
    message.add_alternative(
        document,
        maintype="text",
        subtype="calendar",
        params={"method": method, "charset": "utf-8"},
    )
    message.add_attachment(
        document, maintype="application", subtype="ics", filename=ics.filename(method)
    )
