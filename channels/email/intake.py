"""One fetched email into the store: recorded, ignored, or applied as a bounce.

Runs inside the transaction that also advances the mailbox cursor, so a message is handled
exactly once: replayed after a crash, it is found again (by mailbox position, or by its
Message-ID after a UIDVALIDITY change) and does nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from bot.desk.deadletters import set_aside
from bot.desk.staff import alert_staff
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.contacts import Identity, mark_unreachable
from bot.store.db import Tx
from bot.store.inbox import InboundMessage, is_known, record_inbound
from bot.store.models import OutboxItem
from bot.store.raw_emails import is_read_at, keep_raw_email
from bot.store.types import utcnow
from channels.email.compose import is_message_id_of, our_message_ids
from channels.email.loops import CHANNEL, Kind, Verdict, classify
from channels.email.parse import ParsedEmail, parse_email

log = logging.getLogger("channels.email")
ACTOR = "channel:email"
MAX_REFERENCES_KEPT = 50
_MAILBOX_STATUS = re.compile(r"^5\.1\.\d+$|^5\.2\.1$")


def is_mailbox_status(status: str) -> bool:
    """A DSN status saying the address itself is bad (no such user, mailbox disabled)."""
    return bool(_MAILBOX_STATUS.match(status.strip()))


class NotSentYet(Exception):
    """A bounce arrived before its message was recorded as sent: handle it a moment later."""


class UnreadableEmail(ValueError):
    """A message the store cannot take as it is; it is set aside as a dead letter."""


MAX_ADDRESS_LENGTH = 320
"""RFC 5321 allows 64 octets before the @ and 255 after it."""


async def bounced_items(session: Tx, candidates: list[str]) -> list[OutboxItem]:
    """Our outbox items these Message-IDs name: by their recorded id, or by our id format
    (the send may not be recorded yet)."""
    found = {item.id: item for item in await outbox.items_sent_as(session, CHANNEL, candidates)}
    for message_id, item_id in our_message_ids(" ".join(candidates)).items():
        item = found.get(item_id) or await outbox.find_item(session, item_id)
        if item is not None and item.channel == CHANNEL and is_message_id_of(item, message_id):
            found[item.id] = item
    return list(found.values())


@dataclass(frozen=True, slots=True)
class FetchedMail:
    """A message as read from the mailbox, with its position there."""

    mailbox: str
    uidvalidity: int
    uid: int
    raw: bytes
    last_try: bool = True
    """False while the reader may still hand this message over again later (`NotSentYet`)."""


def position_ref(mail: FetchedMail) -> str:
    """`mailbox uidvalidity/uid`: where a message was read, as a dead letter remembers it."""
    return f"{mail.mailbox} {mail.uidvalidity}/{mail.uid}"


def from_position_ref(ref: str, raw: bytes) -> FetchedMail:
    mailbox, _, position = ref.rpartition(" ")
    uidvalidity, _, uid = position.partition("/")
    return FetchedMail(mailbox, int(uidvalidity), int(uid), raw)


def external_id_of(parsed: ParsedEmail, raw: bytes) -> str:
    """The dedupe key: the Message-ID, or a digest of the message when it has none."""
    if parsed.message_id and len(parsed.message_id) <= 300:
        return parsed.message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def inbound_of(parsed: ParsedEmail, verdict: Verdict, external_id: str) -> InboundMessage:
    """The normalized inbound message; a new thread's subject is part of what they wrote."""
    text = parsed.text
    if parsed.subject and not (parsed.in_reply_to or parsed.references):
        text = f"Subject: {parsed.subject}\n\n{text}".strip()
    meta: dict[str, Any] = {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": list(parsed.references[-MAX_REFERENCES_KEPT:]),
        "subject": parsed.subject,
        "from": parsed.from_address,
        "from_name": parsed.from_name,
        "to": list(parsed.to),
        "cc": list(parsed.cc),
        "kind": verdict.kind.value,
        "not_answered_because": verdict.reason or None,
        "html_only": parsed.html_only,
        "cut": parsed.cut.value,
        "defects": list(parsed.defects),
    }
    return InboundMessage(
        identity=Identity(
            channel=CHANNEL,
            address=parsed.from_address,
            name=parsed.from_name,
            email=parsed.from_address,
        ),
        external_id=external_id,
        text=text,
        attachments=[a.as_meta() for a in parsed.attachments],
        meta={"email": meta},
        sent_at=parsed.date,
        subject=parsed.subject[:500] or None,
    )


class EmailIntake:
    """Turns fetched mail into store records; `handle` returns a conversation to answer."""

    def __init__(self, audit: AuditLog, own_addresses: frozenset[str]) -> None:
        self.audit, self.own_addresses = audit, own_addresses

    async def set_aside(self, session: Tx, mail: FetchedMail, error: str) -> None:
        """Keep a message that could not be handled as a dead letter, at its mailbox position."""
        await set_aside(
            session,
            self.audit,
            source=CHANNEL,
            kind="email_unreadable",
            ref=position_ref(mail),
            payload=mail.raw,
            error=error,
        )

    async def handle(self, session: Tx, mail: FetchedMail) -> int | None:
        if await self._seen_at(session, mail):
            return None
        parsed = parse_email(mail.raw)
        if len(parsed.from_address or "") > MAX_ADDRESS_LENGTH:
            raise UnreadableEmail(f"the sender address is longer than {MAX_ADDRESS_LENGTH}")
        verdict = classify(parsed, self.own_addresses)
        external_id = external_id_of(parsed, mail.raw)
        if await is_known(session, CHANNEL, external_id):
            log.info("email %s is already recorded; skipped", external_id)
            return None
        message_id, answer = None, None
        match verdict.kind:
            case Kind.ANSWER | Kind.AUTO:
                recorded = await record_inbound(session, inbound_of(parsed, verdict, external_id))
                if recorded is not None:
                    message_id = recorded.message.id
                    if verdict.kind is Kind.AUTO:
                        recorded.message.handled_at = utcnow()  # no run will ever answer it
                        await self._not_answered(session, parsed, verdict, recorded.conversation.id)
                    else:
                        answer = recorded.conversation.id
            case Kind.BOUNCE:
                await self._bounce(session, parsed, mail)
            case Kind.IGNORE | Kind.OWN:
                await self._not_answered(session, parsed, verdict, None)
        await keep_raw_email(
            session,
            message_id=message_id,
            mailbox=mail.mailbox,
            uidvalidity=mail.uidvalidity,
            uid=mail.uid,
            header_message_id=(parsed.message_id or "")[:300] or None,
            verdict=verdict.kind.value,
            raw=mail.raw,
        )
        return answer

    async def _seen_at(self, session: Tx, mail: FetchedMail) -> bool:
        return await is_read_at(session, mail.mailbox, mail.uidvalidity, mail.uid)

    async def _not_answered(
        self,
        session: Tx,
        parsed: ParsedEmail,
        verdict: Verdict,
        conversation_id: int | None,
    ) -> None:
        log.info("email from %s not answered: %s", parsed.from_address or "?", verdict.reason)
        await self.audit.append(
            session,
            "email_not_answered",
            {
                "kind": verdict.kind.value,
                "reason": verdict.reason,
                "from": parsed.from_address,
                "subject": parsed.subject[:200],
                "message_id": parsed.message_id,
            },
            actor=ACTOR,
            conversation_id=conversation_id,
        )

    async def _bounce(self, session: Tx, parsed: ParsedEmail, mail: FetchedMail) -> None:
        """Fail the outbound email a bounce reports, as a refusal at sending would."""
        report = parsed.report
        candidates = list(
            dict.fromkeys(
                [
                    *(report.original_ids if report else ()),
                    *([parsed.in_reply_to] if parsed.in_reply_to else []),
                    *parsed.references,
                    *our_message_ids(mail.raw.decode("latin-1")),
                ]
            )
        )
        items = await bounced_items(session, candidates)
        if not mail.last_try and any(i.status in ("pending", "sending") for i in items):
            raise NotSentYet(f"bounce of outbox {[i.id for i in items]} before its send record")
        status = report.status if report else ""
        detail = " ".join(p for p in (status, report.diagnostic if report else "") if p)
        reason = f"bounced: {detail or parsed.subject or 'delivery failed'}"[:500]
        if not items:
            await self.audit.append(
                session,
                "email_bounce_unmatched",
                {"subject": parsed.subject[:200], "reason": reason, "ids": candidates[:10]},
                actor=ACTOR,
            )
            return
        for item in items:
            if item.status == "failed":
                continue
            # Failed like a 5xx at sending: the agent's history shows it as not delivered.
            await outbox.mark_failed(session, item.id, reason)
            await alert_staff(session, item, "was not delivered", reason)
            if is_mailbox_status(status) and item.contact_id is not None:
                await mark_unreachable(session, item.contact_id)
            await self.audit.append(
                session,
                "email_bounced",
                {"outbox_id": item.id, "recipient": item.recipient, "reason": reason},
                actor=ACTOR,
                run_id=item.run_id,
                conversation_id=item.conversation_id,
            )
