"""What one firing of a job does.

- `for_each: agent` with `report: stale_deals`: the stale-deal report (`scheduler.hygiene`).
- `for_each: contact`: a wake-up for every reachable contact the agent's `match` accepts.
- `for_each: deal`: a wake-up for every open deal (stale for `when.inactive_days`, if set)
  whose contact the agent's `match` accepts.

Contacts and deals are read a page at a time and each page's wake-ups are written in a short
transaction of their own; the keys (`firing:ID:contact:N`) make a firing that is run again
after a crash create nothing twice. The `when` conditions are checked when each wake-up runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.catalog import StoredAgent
from agents.definition import ScheduleTrigger
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.models import JobFiring
from bot.store.wakeups import NewWakeup, add_wakeups
from scheduler.hygiene import send_report
from scheduler.targets import chosen_pages


def cause_of(firing: JobFiring) -> dict[str, Any]:
    return {"job": firing.job_name, "scheduled_for": firing.scheduled_for.isoformat()}


async def run_firing(
    db: Database,
    audit: AuditLog,
    stored: StoredAgent,
    trigger: ScheduleTrigger,
    firing: JobFiring,
    *,
    now: datetime,
    direct_channel: str | None,
) -> dict[str, Any]:
    """Do the firing's work; returns its result for `crmbot jobs list`."""
    if trigger.for_each == "agent":
        report = await send_report(
            db,
            audit,
            trigger,
            agent=stored.definition.name,
            firing_id=firing.id,
            now=now,
            direct_channel=direct_channel,
        )
        return {"deals": report.deals, "owners": report.owners, "direct": report.direct}
    return {"woken": await _each_target(db, stored, trigger, firing, now)}


def _wakeup(
    stored: StoredAgent,
    trigger: ScheduleTrigger,
    firing: JobFiring,
    contact_id: int,
    deal_id: int | None = None,
) -> NewWakeup:
    target = f"deal:{deal_id}" if deal_id is not None else f"contact:{contact_id}"
    return NewWakeup(
        key=f"firing:{firing.id}:{target}",
        agent_name=stored.definition.name,
        trigger=trigger.model_dump(mode="json"),
        contact_id=contact_id,
        deal_id=deal_id,
        cause=cause_of(firing),
        since=firing.scheduled_for,
        due_at=firing.scheduled_for,
    )


async def _each_target(
    db: Database, stored: StoredAgent, trigger: ScheduleTrigger, firing: JobFiring, now: datetime
) -> int:
    woken = 0
    async for page in chosen_pages(db, stored.definition, trigger, now):
        wakeups = [_wakeup(stored, trigger, firing, contact, deal) for contact, deal in page]
        if wakeups:
            async with db.transaction() as session:
                woken += await add_wakeups(session, wakeups)
    return woken
