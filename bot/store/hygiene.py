"""Pipeline hygiene: the open deals that went stale, and the contacts who need a follow-up.

The nightly pipeline-hygiene agent starts from these scans. Both read with Core selects into
small frozen rows, a page at a time in keyset order (`id > last id seen`), so a pipeline of
any size is walked in bounded memory and every page is one short query. The iterators read
every page in the caller's session; a caller that must not hold one transaction for the whole
walk (on SQLite every transaction holds the write lock) calls the `*_page` functions, one
transaction a page, passing on the last id it saw.

Definitions:

- An *open* deal is one whose stage is not a closed one (`won`, `lost`).
- An open deal is *stale* when its `last_activity_at` is more than N days before `now`, with
  N taken from `StalePolicy.days_by_stage` for its stage, else `StalePolicy.default_days`.
  `last_activity_at` moves whenever the deal's stage changes or a meeting is booked for it.
- A contact *needs a follow-up* when at least one of their deals is stale and the contact is
  not marked unreachable (a message to them could not be delivered for good).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.deals import CLOSED_STAGES
from bot.store.models import Contact, Deal
from bot.store.types import utcnow

PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class StalePolicy:
    """How many days without activity make an open deal stale, per stage."""

    default_days: int = 14
    """For every open stage without an entry in `days_by_stage`."""
    days_by_stage: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Stage -> days, e.g. {"negotiation": 7, "new": 30}; closed stages here are ignored."""

    def cutoffs(self, now: datetime) -> tuple[datetime, dict[str, datetime]]:
        """(the default cutoff, the cutoff per listed open stage): active before it is stale."""
        per_stage = {
            stage: now - timedelta(days=days)
            for stage, days in self.days_by_stage.items()
            if stage not in CLOSED_STAGES
        }
        return now - timedelta(days=self.default_days), per_stage


@dataclass(frozen=True, slots=True)
class StaleDeal:
    """An open deal with no activity for longer than its stage allows."""

    id: int
    contact_id: int
    title: str
    stage: str
    owner: str | None
    last_activity_at: datetime


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A reachable contact with stale deals: who the hygiene agent reviews."""

    contact_id: int
    name: str
    owner: str | None
    """The contact's owner (the salesperson to hand the review to)."""
    stale_deals: int
    oldest_activity_at: datetime
    """The least recent `last_activity_at` among their stale deals."""


def stale_condition(policy: StalePolicy, now: datetime) -> ColumnElement[bool]:
    """Deals that are open and stale under `policy` at `now`.

    One `stage = s AND last_activity_at < cutoff_s` arm per listed stage and one for every
    other open stage, so each arm is a plain range on (stage, last_activity_at).
    """
    default_cutoff, per_stage = policy.cutoffs(now)
    arms = [
        and_(Deal.stage == stage, Deal.last_activity_at < cutoff)
        for stage, cutoff in sorted(per_stage.items())
    ]
    others = and_(
        Deal.stage.not_in([*CLOSED_STAGES, *per_stage]), Deal.last_activity_at < default_cutoff
    )
    return or_(*arms, others)


async def stale_deals_page(
    session: AsyncSession,
    policy: StalePolicy,
    *,
    now: datetime,
    after_id: int = 0,
    page_size: int = PAGE_SIZE,
) -> list[StaleDeal]:
    """The next `page_size` stale deals with an id above `after_id`, by id."""
    query = (
        select(
            Deal.id,
            Deal.contact_id,
            Deal.title,
            Deal.stage,
            Deal.owner,
            Deal.last_activity_at,
        )
        .where(Deal.id > after_id, stale_condition(policy, now))
        .order_by(Deal.id)
        .limit(page_size)
    )
    return [StaleDeal(*row) for row in await session.execute(query)]


async def stale_deals(
    session: AsyncSession,
    policy: StalePolicy,
    *,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[StaleDeal]:
    """Every stale deal, by id, read a page at a time; `now` is fixed for the whole walk."""
    now = now or utcnow()
    after_id = 0
    while True:
        page = await stale_deals_page(
            session, policy, now=now, after_id=after_id, page_size=page_size
        )
        for deal in page:
            yield deal
        if len(page) < page_size:
            return
        after_id = page[-1].id


async def follow_ups_page(
    session: AsyncSession,
    policy: StalePolicy,
    *,
    now: datetime,
    after_contact_id: int = 0,
    page_size: int = PAGE_SIZE,
) -> list[FollowUp]:
    """The next `page_size` contacts needing a follow-up with an id above
    `after_contact_id`, by contact id.

    A page groups the deals by contact in contact order: without an index that leads with
    `deals.contact_id`, every page reads the whole deals table.
    """
    stale = stale_condition(policy, now)
    query = (
        select(
            Deal.contact_id,
            Contact.name,
            Contact.owner,
            func.count(Deal.id),
            func.min(Deal.last_activity_at),
        )
        .join(Contact, Contact.id == Deal.contact_id)
        .where(Deal.contact_id > after_contact_id, stale, Contact.unreachable.is_(False))
        .group_by(Deal.contact_id, Contact.name, Contact.owner)
        .order_by(Deal.contact_id)
        .limit(page_size)
    )
    return [FollowUp(*row) for row in await session.execute(query)]


async def follow_ups(
    session: AsyncSession,
    policy: StalePolicy,
    *,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[FollowUp]:
    """Every contact needing a follow-up, by id, a page at a time; `now` is fixed."""
    now = now or utcnow()
    after = 0
    while True:
        page = await follow_ups_page(
            session, policy, now=now, after_contact_id=after, page_size=page_size
        )
        for follow_up in page:
            yield follow_up
        if len(page) < page_size:
            return
        after = page[-1].contact_id
