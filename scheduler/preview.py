"""What would fire in the next hours, and for how many contacts: read only, nothing sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agents import catalog
from agents.definition import AgentDefinition, ScheduleTrigger
from bot.store import jobs
from bot.store.db import Database
from bot.store.wakeups import pending_before
from scheduler.clock import slots_between
from scheduler.hygiene import collect
from scheduler.targets import chosen_pages

PAGE = 1000


@dataclass(frozen=True, slots=True)
class PlannedFiring:
    job: str
    slots: list[datetime]
    targets: int
    """Contacts (or deals, or owners for a report) one firing would reach today."""
    unit: str


async def preview(
    db: Database, hours: float, now: datetime
) -> tuple[list[PlannedFiring], list[tuple[str, int]]]:
    """(the jobs that fire before now + hours, the pending wake-ups due by then per agent)."""
    end = now + timedelta(hours=hours)
    planned: list[PlannedFiring] = []
    async with db.reading() as session:
        job_rows = [j for j in await jobs.all_jobs(session) if j.enabled and not j.paused]
        agents = {a.definition.name: a.definition for a in await catalog.list_all(session)}
        waiting = await pending_before(session, end)
    for job in job_rows:
        trigger = ScheduleTrigger.model_validate(job.trigger)
        slots = slots_between(trigger, now - timedelta(microseconds=1), end)
        agent = agents.get(job.agent_name)
        if not slots or agent is None:
            continue
        targets, unit = await _targets(db, agent, trigger, now)
        planned.append(PlannedFiring(job.name, slots, targets, unit))
    return planned, waiting


async def _targets(
    db: Database, agent: AgentDefinition, trigger: ScheduleTrigger, now: datetime
) -> tuple[int, str]:
    if trigger.for_each == "agent":
        owners = await collect(db, trigger, now)
        return sum(o.deals for o in owners.values()), f"stale deals for {len(owners)} owner(s)"
    count = 0
    async for page in chosen_pages(db, agent, trigger, now, page_size=PAGE):
        count += len(page)
    return count, "deals" if trigger.for_each == "deal" else "contacts"
