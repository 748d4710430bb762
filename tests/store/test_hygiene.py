"""The pipeline-hygiene scans find exactly the stale open deals, page by page."""

from __future__ import annotations

from datetime import timedelta

from bot.store.db import Database
from bot.store.hygiene import StalePolicy, follow_ups, stale_deals, stale_deals_page
from bot.store.models import Contact, Deal
from bot.store.types import utcnow

DAYS = timedelta(days=1)


async def _pipeline(db: Database) -> dict[str, int]:
    """Ann: one stale open deal, one fresh, one stale but won. Bob: a stale negotiation (7
    days allowed there). Cat: stale but unreachable. Returns the contact ids by name."""
    now = utcnow()
    async with db.transaction() as session:
        ann, bob = Contact(name="Ann", owner="sam"), Contact(name="Bob")
        cat = Contact(name="Cat", unreachable=True)
        session.add_all([ann, bob, cat])
        await session.flush()
        session.add_all(
            [
                Deal(
                    contact_id=ann.id,
                    title="a-stale",
                    stage="new",
                    last_activity_at=now - 20 * DAYS,
                ),
                Deal(
                    contact_id=ann.id,
                    title="a-fresh",
                    stage="qualified",
                    last_activity_at=now - DAYS,
                ),
                Deal(
                    contact_id=ann.id, title="a-won", stage="won", last_activity_at=now - 90 * DAYS
                ),
                Deal(
                    contact_id=bob.id,
                    title="b-neg",
                    stage="negotiation",
                    last_activity_at=now - 8 * DAYS,
                ),
                Deal(
                    contact_id=cat.id,
                    title="c-stale",
                    stage="new",
                    last_activity_at=now - 30 * DAYS,
                ),
            ]
        )
    return {"Ann": ann.id, "Bob": bob.id, "Cat": cat.id}


async def test_stale_means_open_and_idle_longer_than_its_stage_allows(db: Database) -> None:
    await _pipeline(db)
    policy = StalePolicy(default_days=14, days_by_stage={"negotiation": 7})
    async with db.transaction() as session:
        found = [deal.title async for deal in stale_deals(session, policy, page_size=2)]
    assert found == ["a-stale", "b-neg", "c-stale"]  # never won, lost or fresh

    lenient = StalePolicy(default_days=14, days_by_stage={"negotiation": 10})
    async with db.transaction() as session:
        assert [d.title async for d in stale_deals(session, lenient)] == ["a-stale", "c-stale"]


async def test_pages_continue_after_the_last_id_seen(db: Database) -> None:
    await _pipeline(db)
    policy = StalePolicy(days_by_stage={"negotiation": 7})
    now = utcnow()
    async with db.transaction() as session:
        first = await stale_deals_page(session, policy, now=now, page_size=2)
        rest = await stale_deals_page(session, policy, now=now, after_id=first[-1].id)
    assert [d.title for d in first + rest] == ["a-stale", "b-neg", "c-stale"]


async def test_follow_ups_are_reachable_contacts_with_stale_deals(db: Database) -> None:
    ids = await _pipeline(db)
    policy = StalePolicy(days_by_stage={"negotiation": 7})
    async with db.transaction() as session:
        found = [f async for f in follow_ups(session, policy, page_size=1)]
    assert [(f.contact_id, f.name, f.owner, f.stale_deals) for f in found] == [
        (ids["Ann"], "Ann", "sam", 1),
        (ids["Bob"], "Bob", None, 1),
    ]  # Cat cannot be reached: no follow-up for her
