"""The rules every automatic message obeys, checked in code right before it is sent.

An automatic message (one that answers nothing the contact wrote: a scheduled or event run, a
follow-up) is checked when a worker is about to claim it, not only when its run was planned:
whatever changed in between (staff took the conversation, the contact wrote "stop", the night
came) decides. In order:

1. The contact opted out ("stop", "unsubscribe"...): cancelled, for good.
2. The conversation is with staff, or closed: cancelled.
3. The contact wrote after it was queued: cancelled; their message gets a run of its own.
4. The contact had `PROACTIVE_MAX_PER_WEEK` automatic messages in the last 7 days: cancelled.
5. The account-wide breaker is tripped, or trips now because automatic sends in the last 24
   hours reached the daily limit: held until a person resumes (`crmbot jobs resume --all`).
6. Quiet hours in the contact's time zone (else `BUSINESS_TIMEZONE`): it waits for the
   morning; it is not dropped.

Every verdict other than "send" is audited, and tripping the breaker alerts staff.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.hours import QuietHours
from bot.core.settings import Settings
from bot.desk.staff import notify_staff
from bot.store import proactive
from bot.store.audit import AuditLog
from bot.store.contacts import get_contact
from bot.store.conversations import find_conversation
from bot.store.db import Tx
from bot.store.models import Contact, OutboxItem

log = logging.getLogger("bot.desk.proactive")
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
OPT_OUT = re.compile(
    r"(?i)^\W*(?:stop|stop all|unsubscribe|opt[\s-]?out|cancel|quit|end|"
    r"remove me|do not contact me|don'?t contact me|no more messages|stopp|abmelden|arrêter)\W*$"
)
"""A message that is only an opt-out word, the way SMS carriers read STOP: "stop!" opts out,
"don't stop the trial" does not."""


def is_opt_out(text: str) -> bool:
    return OPT_OUT.match(text.strip()) is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Literal["send", "cancel", "hold", "postpone"]
    reason: str = ""
    until: datetime | None = None


SEND = Verdict("send")


class ProactiveRules:
    """The checks above, with their limits from the settings."""

    def __init__(self, settings: Settings, audit: AuditLog) -> None:
        self.audit = audit
        self.max_per_week = settings.proactive_max_per_week
        self.quiet = QuietHours.parse(settings.quiet_hours)
        self.zone = ZoneInfo(settings.business_timezone)
        self.daily_limit = settings.proactive_daily_limit
        self.multiple, self.floor = (
            settings.proactive_breaker_multiple,
            settings.proactive_breaker_floor,
        )

    def zone_of(self, contact: Contact) -> ZoneInfo:
        try:
            return ZoneInfo(contact.timezone) if contact.timezone else self.zone
        except (ZoneInfoNotFoundError, ValueError, OSError):  # 'America' is a directory
            return self.zone

    async def limit_for_today(self, session: Tx, now: datetime) -> int:
        """The daily limit: the setting, else `multiple` x the average of the 7 days before
        the last 24 hours, never below `floor`."""
        if self.daily_limit is not None:
            return self.daily_limit
        usual = await proactive.automatic_sent_since(session, now - DAY - WEEK, until=now - DAY)
        return max(self.floor, int(self.multiple * usual / 7))

    async def standing(
        self, session: Tx, contact: Contact, conversation_id: int | None, now: datetime
    ) -> Verdict:
        """Rules 1, 2, 4 and 6 for a contact (a run that is due checks these first)."""
        if contact.opted_out_at is not None:
            return Verdict("cancel", "the contact opted out of automatic messages")
        if conversation_id is not None:
            conversation = await find_conversation(session, conversation_id)
            if conversation is not None and conversation.state != "bot":
                return Verdict("cancel", f"the conversation is {conversation.state}")
        if self.max_per_week >= 0:
            sent = await proactive.automatic_sent_since(session, now - WEEK, contact.id)
            if sent >= self.max_per_week:
                return Verdict("cancel", f"the weekly cap of {self.max_per_week} is reached")
        until = self.quiet.wait_until(now, self.zone_of(contact))
        if until is not None:
            return Verdict("postpone", "quiet hours", until)
        return SEND

    async def breaker_verdict(self, session: Tx, now: datetime) -> Verdict:
        """Rule 5: hold everything while tripped; trip it when today's sends reach the limit."""
        switch = await proactive.lock_breaker(session)
        if switch.tripped:
            return Verdict("hold", f"proactive sending is paused: {switch.reason}")
        limit = await self.limit_for_today(session, now)
        sent = await proactive.automatic_sent_since(session, now - DAY)
        if sent < limit:
            return SEND
        reason = f"{sent} automatic messages in 24 h reached the limit of {limit}"
        if await proactive.trip_breaker(session, reason, now):
            await self._alert_tripped(session, reason, now)
        return Verdict("hold", f"proactive sending is paused: {reason}")

    async def _alert_tripped(self, session: Tx, reason: str, now: datetime) -> None:
        log.error("proactive breaker tripped: %s", reason)
        await self.audit.append(session, "breaker_tripped", {"reason": reason}, actor="breaker")
        await notify_staff(
            session,
            key=f"breaker:{now.isoformat()}",
            conversation_id=None,
            contact_id=None,
            kind="alert",
            text=f"⛔ Automatic messages are paused: {reason}. Nothing automatic goes out until "
            "a person resumes it (crmbot jobs resume --all, or /jobs resume).",
        )

    async def check_item(self, session: Tx, item: OutboxItem, now: datetime) -> Verdict:
        """Every rule, for an automatic outbox item about to be claimed."""
        if item.contact_id is None:
            return SEND
        contact = await get_contact(session, item.contact_id)
        verdict = await self.standing(session, contact, item.conversation_id, now)
        wrote = item.message_id is not None and await proactive.wrote_after(
            session, contact.id, item.message_id
        )
        if verdict.action == "send" and wrote:
            verdict = Verdict("cancel", "the contact wrote after it was queued")
        if verdict.action in ("send", "postpone"):
            held = await self.breaker_verdict(session, now)
            verdict = held if held.action == "hold" else verdict
        return verdict

    async def gate(self, session: Tx, item: OutboxItem, now: datetime) -> bool:
        """Apply `check_item` to `item`; True if it may be sent now."""
        verdict = await self.check_item(session, item, now)
        match verdict.action:
            case "send":
                return True
            case "cancel":
                await proactive.cancel(session, item.id, verdict.reason)
            case "hold":
                await proactive.hold(session, item.id, verdict.reason)
            case "postpone":
                assert verdict.until is not None
                await proactive.postpone(session, item.id, verdict.until, verdict.reason)
        await self.audit.append(
            session,
            "proactive_rule",
            {
                "outbox_id": item.id,
                "action": verdict.action,
                "reason": verdict.reason,
                "until": verdict.until.isoformat() if verdict.until else None,
            },
            actor="bot.desk.proactive",
            run_id=item.run_id,
            conversation_id=item.conversation_id,
        )
        return False

    async def record_opt_out(
        self, session: Tx, contact_id: int, conversation_id: int, text: str, now: datetime
    ) -> bool:
        """The contact wrote "stop": no automatic message ever again, and staff are told."""
        if not await proactive.opt_out(session, contact_id, now):
            return False
        await self.audit.append(
            session,
            "opted_out",
            {"contact_id": contact_id, "text": text[:200]},
            actor="contact",
            conversation_id=conversation_id,
        )
        contact = await get_contact(session, contact_id)
        await notify_staff(
            session,
            key=f"opt-out:{contact_id}",
            conversation_id=conversation_id,
            contact_id=contact_id,
            kind="note",
            text=f"🔕 {contact.name or 'The contact'} asked for no more automatic messages "
            f"(“{text[:100]}”). They still get answers when they write.",
        )
        return True
