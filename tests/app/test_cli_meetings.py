"""`crmbot meetings` and `crmbot staff calendar`, run as a person would run them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import ics
from bot.desk.meeting_notices import label
from bot.store.availability import book_slot
from bot.store.contacts import Identity, resolve_contact
from bot.store.conversations import open_conversation
from bot.store.db import Database
from bot.store.models import AuditEvent, Base, Meeting, OutboxItem
from tests.app.test_cli import Crmbot, error_line

T = TypeVar("T")
WHEN = (datetime.now(UTC) + timedelta(days=5)).replace(hour=10, minute=0, second=0, microsecond=0)


def _in(crmbot: Crmbot, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`work` in one transaction on the command's database, outside any event loop."""

    async def run() -> T:
        db = Database(f"sqlite+aiosqlite:///{crmbot.db_path}")
        try:
            await db.migrate()
            async with db.transaction() as session:
                return await work(session)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _seed(crmbot: Crmbot) -> tuple[int, int]:
    """Ann (email) with a meeting at WHEN and Bob with one two hours later; their ids."""

    async def work(session: AsyncSession) -> tuple[int, int]:
        ids = []
        for n, name in enumerate(("Ann", "Bob")):
            address = f"{name.lower()}@prospect.test"
            identity = Identity("email", address, name=name, email=address)
            contact = await resolve_contact(session, identity)
            await open_conversation(session, contact.id, "email")
            meeting = await book_slot(
                session,
                None,
                contact_id=contact.id,
                starts_at=WHEN + timedelta(hours=2 * n),
                owner="team",
            )
            assert meeting is not None
            ids.append(meeting.id)
        return ids[0], ids[1]

    return _in(crmbot, work)


def _rows(crmbot: Crmbot, model: type[Base], *where: Any) -> list[Any]:
    async def work(session: AsyncSession) -> list[Any]:
        return list((await session.execute(select(model).where(*where))).scalars())

    return _in(crmbot, work)


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


def test_staff_calendar_prints_the_private_feed_url_and_rotates_it(crmbot: Crmbot) -> None:
    added = crmbot("staff", "add", "Sam Lee", "--email", "sam@acme.test")
    assert added.stdout.strip() == "added Sam Lee (no Telegram id, sam@acme.test)"
    base = {"PUBLIC_URL": "https://crm.example.com/", "EVENTS_PORT": "8090", "EVENTS_SECRET": "x"}

    first = crmbot("staff", "calendar", "sam lee", **base)
    again = crmbot("staff", "calendar", "Sam Lee", **base)
    rotated = crmbot("staff", "calendar", "Sam Lee", "--rotate", **base)
    local = crmbot("staff", "calendar", "Sam Lee")

    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert url.startswith("https://crm.example.com/calendar/") and url.endswith(".ics")
    assert len(url.removeprefix("https://crm.example.com/calendar/")) >= 36
    assert again.stdout.strip() == url and rotated.stdout.strip() != url
    token = rotated.stdout.strip().rsplit("/", 1)[1]
    assert local.stdout.strip() == f"http://127.0.0.1/calendar/{token}"
    assert "EVENTS_PORT is not set" in local.stderr
    assert error_line(crmbot("staff", "calendar", "Nobody")).endswith(
        "no staff member named 'Nobody'"
    )


def test_meetings_list_reschedule_and_cancel_send_updates_with_the_same_uid(
    crmbot: Crmbot,
) -> None:
    ann, bob = _seed(crmbot)

    listed = crmbot("meetings", "list")
    moved = crmbot("meetings", "reschedule", str(ann), (WHEN + timedelta(days=1)).isoformat())
    clash = crmbot("meetings", "reschedule", str(ann), (WHEN + timedelta(hours=2)).isoformat())
    cancelled = crmbot("meetings", "cancel", str(ann), "--by", "Sam")
    twice = crmbot("meetings", "cancel", str(ann))

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [f"#{ann}", f"#{bob}"]
    assert label(WHEN, UTC) in lines[0] and "Ann" in lines[0] and "seq 0" in lines[0]
    assert moved.returncode == 0, moved.stderr
    assert "moved to" in moved.stdout and "sent to the contact on email" in moved.stdout
    assert clash.returncode == 1 and "another meeting" in clash.stderr
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert twice.returncode == 1 and "is cancelled" in twice.stderr

    [meeting] = _rows(crmbot, Meeting, Meeting.id == ann)
    assert (meeting.status, meeting.sequence) == ("cancelled", 2)
    notices = sorted(_rows(crmbot, OutboxItem, OutboxItem.channel == "email"), key=lambda i: i.id)
    invites = [ics.read_invite_meta(i.meta) for i in notices]
    assert [(m, e.uid, e.sequence) for e, m in invites if e] == [
        ("REQUEST", meeting.uid, 1),
        ("CANCEL", meeting.uid, 2),
    ]
    assert notices[1].text.startswith("Your Meeting with our team on")
    staff = [i.text for i in _rows(crmbot, OutboxItem, OutboxItem.channel == "staff")]
    assert [t.split(":")[0] for t in staff] == ["📅 Meeting moved", "📅 Meeting cancelled"]
    audited = _rows(crmbot, AuditEvent, AuditEvent.kind.in_(["meeting_moved", "meeting_cancelled"]))
    assert [(e.kind, e.actor) for e in audited] == [
        ("meeting_moved", "cli"),
        ("meeting_cancelled", "cli:Sam"),
    ]


def test_a_time_the_command_cannot_read_is_one_error_line(crmbot: Crmbot) -> None:
    ann, _ = _seed(crmbot)

    result = crmbot("meetings", "reschedule", str(ann), "next tuesday")

    assert result.returncode == 2
    assert "is not a time like 2030-05-06T09:30" in error_line(result)
    assert error_line(crmbot("meetings", "cancel", "999")).endswith("no meeting 999")
