"""No mail loops: which mail is never answered, and a cap on automatic replies per contact.

Two lines of defence, both in code:

1. At intake, `classify` sorts every message. Auto-replies (RFC 3834 `Auto-Submitted`, the
   common vendor headers, no-reply senders) are recorded in the conversation already handled,
   so no run ever answers them; bulk and list mail, mail without a usable sender and our own
   mail are not recorded at all; bounces are applied to the outbound message they bounce.
2. At delivery, `AutoReplyCap` refuses an automatic (agent or system) email to a contact who
   already got `limit` of them in the past hour. That is where a loop with a robot that sends
   none of those headers is stopped: whatever started the run, nothing more goes out; the
   refusal is a delivery failure, which staff are alerted to and the agent's history shows.
   Staff replies are never capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bot.store.db import Tx
from bot.store.models import OutboxItem
from bot.store.outbox import count_recent_by_authors
from bot.store.types import utcnow
from channels.email.parse import ParsedEmail

CHANNEL = "email"
AUTOMATIC_AUTHORS = ("agent", "system")
"""Outbox authors whose mail is automatic (gets `Auto-Submitted`, counts towards the cap)."""
BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
NO_REPLY_SENDERS = ("noreply", "no-reply", "donotreply", "do-not-reply", "no_reply")
LIST_HEADERS = ("list-id", "list-post", "list-unsubscribe")


class Kind(StrEnum):
    """What intake does with a message."""

    ANSWER = "answer"
    """A person wrote: record it and let an agent answer."""
    AUTO = "auto"
    """Automatic mail from a contact (out of office...): recorded, never answered."""
    IGNORE = "ignore"
    """Bulk, list, sender-less mail: not a conversation; audited only."""
    BOUNCE = "bounce"
    """A delivery failure report: marks the outbound message it bounces as failed."""
    OWN = "own"
    """Sent from our own address: never recorded, never answered."""


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    reason: str


def classify(parsed: ParsedEmail, own_addresses: frozenset[str]) -> Verdict:
    """Decide whether `parsed` may be answered, and if not, why."""
    sender = parsed.from_address
    local = sender.partition("@")[0]
    if sender in own_addresses:
        return Verdict(Kind.OWN, "sent from our own address")
    if _is_bounce(parsed, local):
        return Verdict(Kind.BOUNCE, "delivery failure report")
    auto = _auto_reason(parsed.headers)
    if auto is not None:
        return Verdict(Kind.AUTO, auto)
    bulk = _bulk_reason(parsed.headers)
    if bulk is not None:
        return Verdict(Kind.IGNORE, bulk)
    if not sender:
        return Verdict(Kind.IGNORE, "no usable From address")
    if local in NO_REPLY_SENDERS:
        return Verdict(Kind.AUTO, f"sent from a no-reply address ({sender})")
    return Verdict(Kind.ANSWER, "")


def _is_bounce(parsed: ParsedEmail, local: str) -> bool:
    if local in BOUNCE_SENDERS:
        return True
    report_type = parsed.headers.get("content-type", "").lower()
    return parsed.content_type == "multipart/report" and "delivery-status" in report_type


def _auto_reason(headers: dict[str, str]) -> str | None:
    auto_submitted = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    if headers.get("x-autoreply", "").strip().lower() in ("yes", "true", "1"):
        return "X-Autoreply"
    if "x-autorespond" in headers:
        return "X-Autorespond"
    suppress = headers.get("x-auto-response-suppress", "").lower()
    if "all" in suppress.replace(" ", "").split(","):  # what Exchange puts on out-of-office
        return f"X-Auto-Response-Suppress: {suppress}"
    return None


def _bulk_reason(headers: dict[str, str]) -> str | None:
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in LIST_HEADERS:
        if name in headers:
            return f"list mail ({name})"
    return None


class AutoReplyCap:
    """At most `limit` automatic emails per contact per hour."""

    def __init__(self, limit: int, window: timedelta = timedelta(hours=1)) -> None:
        self.limit, self.window = limit, window

    async def refusal(self, session: Tx, item: OutboxItem) -> str | None:
        """Why `item` must not be sent, or None when it may."""
        if item.author not in AUTOMATIC_AUTHORS:
            return None
        since = utcnow() - self.window
        # An `unknown` one may have gone out: it counts rather than risk one more.
        sent = await count_recent_by_authors(
            session,
            channel=CHANNEL,
            contact_id=item.contact_id,
            authors=AUTOMATIC_AUTHORS,
            since=since,
            excluding=item.id,
        )
        if sent < self.limit:
            return None
        return (
            f"automatic reply cap reached: {sent} automatic emails to this contact in the past "
            f"hour (EMAIL_AUTOREPLY_CAP_PER_HOUR={self.limit}); a mail loop with another robot? "
            "Not sent; a person should answer."
        )
