"""A staff member's calendar feed over real HTTP: their meetings and the team's, nobody
else's, cancelled ones marked; the token is the only key and an unknown one is a 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from icalendar import Calendar
from sqlalchemy import select

from bot.app.http_api import HttpApi
from bot.store import meetings, staff_members
from bot.store.audit import AuditLog
from bot.store.availability import book_slot, cancel_slot
from bot.store.contacts import Identity, resolve_contact
from bot.store.db import Database
from bot.store.models import AuditEvent, Meeting
from bot.store.refusals import Refusals

SOON = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)


async def _book(db: Database, name: str, owner: str, starts_at: datetime) -> Meeting:
    address = f"{name.lower()}@prospect.test"
    async with db.transaction() as session:
        contact = await resolve_contact(
            session, Identity("email", address, name=name, email=address)
        )
        meeting = await book_slot(
            session, None, contact_id=contact.id, starts_at=starts_at, owner=owner, topic="Demo"
        )
    assert meeting is not None
    return meeting


@pytest.fixture
def refusals(db: Database) -> Refusals:
    return Refusals(db, AuditLog(), clock=lambda: 1_700_000_010.0)


@pytest.fixture
async def http(db: Database, refusals: Refusals) -> AsyncIterator[aiohttp.ClientSession]:
    server = HttpApi(db, refusals.audit, refusals, secret="s3cret-for-posts", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.bound_port}") as session:
            yield session
    finally:
        await server.stop()
        await refusals.aclose()


async def test_the_feed_shows_the_members_and_the_teams_meetings_with_cancellations(
    db: Database, http: aiohttp.ClientSession
) -> None:
    async with db.transaction() as session:
        await staff_members.add(session, "Sam Lee")
        await meetings.set_email(session, "Sam Lee", "sam@acme.test")
        token = await meetings.calendar_token(session, "sam lee")
    own = await _book(db, "Ann", "sam lee", SOON)
    team = await _book(db, "Bob", "team", SOON + timedelta(hours=1))
    await _book(db, "Cy", "Kim", SOON)
    dropped = await _book(db, "Dee", "Sam Lee", SOON + timedelta(days=1))
    async with db.transaction() as session:
        stored = await session.get(Meeting, dropped.id)
        assert stored is not None and await cancel_slot(session, stored)

    async with http.get(f"/calendar/{token}.ics") as response:
        assert response.status == 200
        assert response.content_type == "text/calendar"
        assert response.headers["Cache-Control"].startswith("private")
        calendar = Calendar.from_ical(await response.read())

    assert str(calendar["method"]) == "PUBLISH"
    assert str(calendar["x-wr-calname"]) == "crmbot: Sam Lee"
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    assert set(events) == {own.uid, team.uid, dropped.uid}
    mine = events[own.uid]
    assert mine.decoded("dtstart") == SOON and mine.decoded("dtend") == SOON + timedelta(minutes=30)
    assert str(mine["summary"]) == "Demo: Ann"
    assert str(mine["organizer"]) == "mailto:sam@acme.test"
    assert str(mine["attendee"]) == "mailto:ann@prospect.test"
    assert "ann@prospect.test" in str(mine["description"])
    assert (str(events[dropped.uid]["status"]), int(events[dropped.uid]["sequence"])) == (
        "CANCELLED",
        1,
    )
    assert str(events[team.uid]["status"]) == "CONFIRMED"


async def test_an_unknown_or_rotated_token_is_a_counted_404(
    db: Database, http: aiohttp.ClientSession, refusals: Refusals
) -> None:
    async with db.transaction() as session:
        await staff_members.add(session, "Sam")
        old = await meetings.calendar_token(session, "Sam")
        new = await meetings.calendar_token(session, "Sam", rotate=True)
        assert await meetings.calendar_token(session, "Sam") == new != old

    for path in (f"/calendar/{old}.ics", "/calendar/guess.ics"):
        async with http.get(path) as response:
            assert (response.status, await response.json()) == (404, {"error": "no such calendar"})
    async with http.get(f"/calendar/{new}.ics") as response:
        assert response.status == 200

    await refusals.flush()
    async with db.transaction() as session:
        refused = (
            (await session.execute(select(AuditEvent).where(AuditEvent.kind == "refused")))
            .scalars()
            .all()
        )
    [row] = refused
    assert (row.payload["reason"], row.payload["count"]) == ("unknown calendar token", 2)
    assert old not in str(row.payload)
