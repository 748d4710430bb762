"""Reading one email: headers, the new text of a reply, attachments, delivery reports.

Built on the standard library's modern email API (`policy.default`), which accepts malformed
MIME and notes defects instead of raising. Plain text is preferred over HTML; attachments are
described (name, type, size) and never opened. `parse_email` never raises.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, cast

from channels.email.reply import Cut, split_reply
from channels.email.text import (
    MAX_TEXT,
    clean,
    decode_text,
    has_raw_bytes,
    html_to_text,
    quote_marked_text,
)

log = logging.getLogger("channels.email")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with the message: described, never opened."""

    name: str | None
    content_type: str
    size: int

    def as_meta(self) -> dict[str, Any]:
        return {
            "type": "email_attachment",
            "name": self.name,
            "mime_type": self.content_type,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What a bounce says: which of our messages failed, and why."""

    original_ids: tuple[str, ...]
    status: str = ""
    """The RFC 3463 status, e.g. `5.1.1` (no such mailbox)."""
    diagnostic: str = ""
    recipient: str = ""


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """One email as the channel needs it."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_address: str
    """Normalized: lowercased, without angle brackets; empty when there is no usable one."""
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    text: str
    """What the sender wrote: quoted history and signature removed, or the whole body when
    the cut was unsure (see `cut`)."""
    full_text: str
    html_only: bool
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    """First value of every header, by lowercased name (for the loop rules)."""
    content_type: str = "text/plain"
    report: DeliveryReport | None = None
    defects: tuple[str, ...] = ()
    cut: Cut = Cut.NONE
    """What was cut from the body to make `text` (`channels.email.reply`)."""


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse `raw`; a message nothing can read becomes its decoded bytes."""
    try:
        return _parse(message_from_bytes(raw, policy=policy.default))
    except Exception:
        log.exception("unreadable email (%d bytes); keeping it as plain text", len(raw))
        _, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
        text = decode_text(body, None)[:MAX_TEXT]
        return ParsedEmail(
            None,
            None,
            (),
            "",
            "",
            "",
            (),
            (),
            None,
            text,
            text,
            False,
            defects=("unparsable",),
            cut=Cut.KEPT_WHOLE,
        )


def _parse(msg: EmailMessage) -> ParsedEmail:
    senders = addresses(msg, "From")
    name, address = senders[0] if senders else ("", "")
    body_part = _body_part(msg)
    full_text, text, cut, html_only = _texts(body_part)
    ids = message_ids(header(msg, "Message-ID"))
    return ParsedEmail(
        message_id=ids[0] if ids else None,
        in_reply_to=next(iter(message_ids(header(msg, "In-Reply-To"))), None),
        references=message_ids(header(msg, "References")),
        subject=" ".join(header(msg, "Subject").split()),
        from_address=address,
        from_name=name,
        to=tuple(a for _, a in addresses(msg, "To")),
        cc=tuple(a for _, a in addresses(msg, "Cc")),
        date=_date(msg),
        text=text,
        full_text=full_text,
        html_only=html_only,
        attachments=tuple(_attachments(msg, body_part)),
        headers={key.lower(): header(msg, key)[:1000] for key in dict.fromkeys(msg.keys())},
        content_type=msg.get_content_type(),
        report=_report(msg),
        defects=_defects(msg),
        cut=cut,
    )


# Headers ---------------------------------------------------------------------------------


def header(msg: EmailMessage, name: str) -> str:
    """A header's decoded value, or ""; 8-bit bytes and values the parser chokes on are
    decoded from the raw header."""
    raw = _raw_header(msg, name)
    if has_raw_bytes(raw):
        return clean(raw)  # the parser would turn each of those bytes into U+FFFD
    try:
        value = msg.get(name)
        return clean(str(value)) if value is not None else ""
    except Exception:
        try:
            return clean(str(make_header(decode_header(raw))))
        except Exception:
            return clean(raw)


def _raw_header(msg: EmailMessage, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def normalize_address(address: str) -> str:
    """The comparable form of an address: trimmed, without brackets, lowercased."""
    return clean(address).strip().strip("<>").strip().lower()


def addresses(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    """(display name, normalized address) of an address header; unusable entries dropped."""
    try:
        parsed: Any = msg.get(name)
        pairs = [(a.display_name, a.addr_spec) for a in parsed.addresses] if parsed else []
    except Exception:
        pairs = getaddresses([header(msg, name)])
    found = [(clean(n).strip(), normalize_address(a)) for n, a in pairs]
    return [(n, a) for n, a in found if a.count("@") == 1 and " " not in a]


def message_ids(value: str) -> tuple[str, ...]:
    """The `<id>` tokens of a Message-ID, In-Reply-To or References header, in order."""
    found = _MESSAGE_ID.findall(value)
    bare = value.strip().strip("<>")
    if not found and bare and " " not in bare:
        found = [f"<{bare}>"]  # a bare id, as some mailers send it
    return tuple(dict.fromkeys(found))


def _date(msg: EmailMessage) -> datetime | None:
    try:
        stamp: datetime | None = getattr(msg.get("Date"), "datetime", None)
    except Exception:
        return None
    if stamp is None:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _defects(msg: EmailMessage) -> tuple[str, ...]:
    names = [type(d).__name__ for part in msg.walk() for d in getattr(part, "defects", [])]
    return tuple(dict.fromkeys(names))[:10]


# Body -------------------------------------------------------------------------------------


def _body_part(msg: EmailMessage) -> EmailMessage | None:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None and not msg.is_multipart() and not msg.is_attachment():
        return msg  # e.g. a multipart without its boundary: its payload is all we have
    return cast(EmailMessage | None, part)


def part_text(part: EmailMessage) -> str:
    """The decoded text of a non-multipart part, whatever its transfer encoding or charset."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_text(data, charset)


def _texts(part: EmailMessage | None) -> tuple[str, str, Cut, bool]:
    """(full text, what the sender wrote, what was cut, whether it came from HTML alone)."""
    if part is None:
        return "", "", Cut.NONE, False
    content = part_text(part)
    html_only = part.get_content_type() == "text/html"
    full = html_to_text(content) if html_only else content.strip()
    reply = split_reply(quote_marked_text(content) if html_only else content)
    new = full if reply.cut is Cut.KEPT_WHOLE else reply.new
    return full[:MAX_TEXT], new[:MAX_TEXT], reply.cut, html_only


# Attachments and reports -------------------------------------------------------------------


def _children(part: EmailMessage) -> list[EmailMessage]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, EmailMessage)] if isinstance(payload, list) else []


def _attachments(msg: EmailMessage, body_part: EmailMessage | None) -> list[Attachment]:
    found: list[Attachment] = []

    def visit(part: EmailMessage) -> None:
        if part is body_part:
            return
        kind = part.get_content_type()
        if part.is_multipart() and not kind.startswith("message/"):
            for child in _children(part):
                visit(child)
        elif part.is_attachment() or part.get_content_maintype() not in ("text", "multipart"):
            found.append(Attachment(_filename(part), kind, _size(part)))

    visit(msg)
    return found


def _filename(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return clean(name)[:300] if name else None


def _size(part: EmailMessage) -> int:
    try:
        if part.is_multipart():
            return len(part.as_bytes())
        data = part.get_payload(decode=True)
    except Exception:
        return 0
    return len(data) if isinstance(data, bytes) else 0


def _report(msg: EmailMessage) -> DeliveryReport | None:
    """The delivery report (DSN) of a bounce, or None when the message carries none."""
    ids: list[str] = []
    status: dict[str, str] = {}
    for part in cast(list[EmailMessage], list(msg.walk())):
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            status = status or _status_fields(part)
        elif kind == "message/rfc822":
            for inner in _children(part):
                ids += message_ids(header(inner, "Message-ID"))
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            headers = message_from_string(part_text(part), policy=policy.default)
            ids += message_ids(header(headers, "Message-ID"))
    if not ids and not status and msg.get_content_type() != "multipart/report":
        return None
    return DeliveryReport(
        tuple(dict.fromkeys(ids)),
        status=status.get("status", ""),
        diagnostic=status.get("diagnostic-code", "")[:500],
        recipient=status.get("final-recipient", "").rpartition(";")[2].strip(),
    )


def _status_fields(part: EmailMessage) -> dict[str, str]:
    """The first recipient block of a message/delivery-status part that has a Status."""
    for block in _children(part):
        fields = {k.lower(): header(block, k) for k in block}
        if fields.get("status"):
            return fields
    return {}
