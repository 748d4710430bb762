"""The stale-deal report: every deal owner gets one message listing their stale deals.

Built in code from the store, never by a model: every line is a deal that exists, with its
stage, how long it has been quiet and the next step the definition suggests for its stage.
The scan reads a page of deals at a time by id (an indexed range), so a pipeline of 100,000
deals never sits in memory as rows; only the per-owner lines do, capped per owner.
An owner with a Telegram id gets the list in a private message; anyone else's list (and the
deals with no owner) goes to the staff group. Each message has an idempotency key made of the
firing and the owner, so a firing that is run again sends nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from agents.definition import ScheduleTrigger
from bot.core.safe_text import visible_line
from bot.desk.staff import notify_staff
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.hygiene import StaleDeal, StalePolicy, stale_deals_page
from bot.store.staff_members import telegram_id_of

log = logging.getLogger("scheduler.hygiene")
LINES_PER_OWNER = 40
NO_OWNER = "(no owner)"


@dataclass
class OwnerList:
    deals: int = 0
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Report:
    deals: int
    owners: int
    direct: int
    """Owners reached in a private message; the others' lists went to the staff group."""


def deal_line(deal: StaleDeal, now: datetime, next_steps: dict[str, str]) -> str:
    quiet = (now - deal.last_activity_at).days
    step = next_steps.get(deal.stage, "decide: follow up, or close it as lost")
    title = visible_line(deal.title or f"Deal {deal.id}")[:80]
    return f"• {title} (#{deal.id}) — {deal.stage}, quiet {quiet} days — next: {step}"


async def collect(
    db: Database, trigger: ScheduleTrigger, now: datetime, page_size: int = 1000
) -> dict[str, OwnerList]:
    """The stale deals by owner, a page per short read."""
    policy = StalePolicy(default_days=trigger.stale_days)
    owners: dict[str, OwnerList] = defaultdict(OwnerList)
    after = 0
    while True:
        async with db.reading() as session:
            page = await stale_deals_page(
                session, policy, now=now, after_id=after, page_size=page_size
            )
        for deal in page:
            found = owners[deal.owner or NO_OWNER]
            found.deals += 1
            if len(found.lines) < LINES_PER_OWNER:
                found.lines.append(deal_line(deal, now, trigger.next_steps))
        if len(page) < page_size:
            return dict(owners)
        after = page[-1].id


def owner_text(owner: str, found: OwnerList, days: int) -> str:
    more = found.deals - len(found.lines)
    head = f"🧹 {found.deals} deal(s) with no activity for {days}+ days"
    lines = [head + ("" if owner == NO_OWNER else f" — {visible_line(owner)}:"), *found.lines]
    if owner == NO_OWNER:
        lines[0] = head + " and no owner:"
    if more > 0:
        lines.append(f"…and {more} more")
    return "\n".join(lines)


async def send_report(
    db: Database,
    audit: AuditLog,
    trigger: ScheduleTrigger,
    *,
    agent: str,
    firing_id: int,
    now: datetime,
    direct_channel: str | None,
) -> Report:
    """Scan, then queue one message per owner and audit the report, in one transaction.

    `direct_channel` is where owners with a Telegram id get their own message ("telegram"),
    or None when that channel is not running here: then every list goes to the staff group.
    """
    owners = await collect(db, trigger, now)
    direct = 0
    async with db.transaction() as session:
        for owner, found in sorted(owners.items()):
            text = owner_text(owner, found, trigger.stale_days)
            key = f"hygiene:{firing_id}:{owner}"
            chat = await telegram_id_of(session, owner) if owner != NO_OWNER else None
            if chat is not None and direct_channel is not None:
                await outbox.enqueue(
                    session,
                    key=key,
                    conversation_id=None,
                    contact_id=None,
                    channel=direct_channel,
                    recipient=str(chat),
                    text=text,
                    author="system",
                    meta={"kind": "hygiene", "owner": owner},
                    to_contact=False,
                )
                direct += 1
            else:
                await notify_staff(
                    session,
                    key=key,
                    conversation_id=None,
                    contact_id=None,
                    text=text,
                    kind="hygiene",
                    meta={"owner": owner},
                )
        report = Report(sum(f.deals for f in owners.values()), len(owners), direct)
        await audit.append(
            session,
            "hygiene_report",
            {
                "firing_id": firing_id,
                "stale_days": trigger.stale_days,
                "deals": report.deals,
                "owners": {owner: found.deals for owner, found in sorted(owners.items())},
                "direct_messages": direct,
            },
            actor=f"agent:{agent}",
        )
    log.info("stale-deal report: %s deal(s), %s owner(s)", report.deals, report.owners)
    return report
