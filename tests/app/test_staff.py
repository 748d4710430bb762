"""Staff members: `crmbot staff`, the `/staff` admin command, and adding admin commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.admin import STAFF_USAGE, Admin, AdminCommands
from bot.store import staff_members
from bot.store.db import Tx
from bot.store.models import AuditEvent, Message, StaffMember
from tests.app.test_cli import Crmbot, error_line
from tests.support.fake_telegram import FakeTelegram
from tests.support.harness import Harness
from tests.support.telegram_rig import ADMIN_ID, TelegramRig, eventually

ADMIN = Admin("telegram:1")


# crmbot staff


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


def test_staff_are_added_listed_updated_and_removed_from_the_cli(crmbot: Crmbot) -> None:
    assert "no staff members" in crmbot("staff", "list").stdout
    assert crmbot("staff", "add", "Sam Lee", "--telegram-id", "555").stdout == (
        "added Sam Lee (telegram 555)\n"
    )
    assert crmbot("staff", "add", "Ann").stdout == "added Ann (no Telegram id)\n"
    assert crmbot("staff", "add", "sam  lee", "--telegram-id", "556").stdout == (
        "updated Sam Lee (telegram 556)\n"
    )

    listed = crmbot("staff", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["Ann (no Telegram id)", "Sam Lee (telegram 556)"]
    removed = crmbot("staff", "remove", "SAM LEE")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == "removed Sam Lee\n"
    assert crmbot("staff", "list").stdout.splitlines() == ["Ann (no Telegram id)"]


def test_staff_cli_mistakes_are_one_error_line(crmbot: Crmbot) -> None:
    assert crmbot("staff", "add", "Sam", "--telegram-id", "555").returncode == 0

    taken = crmbot("staff", "add", "Tom", "--telegram-id", "555")
    unknown = crmbot("staff", "remove", "Nobody")

    assert taken.returncode == 2
    assert "Telegram id 555 is already Sam's" in error_line(taken)
    assert unknown.returncode == 2
    assert "no staff member named 'Nobody'" in error_line(unknown)
    assert crmbot.sql("SELECT name, telegram_id FROM staff_members") == [("Sam", 555)]


# The store


async def test_telegram_id_of_a_name_in_any_case_or_none(harness: Harness) -> None:
    async with harness.db.transaction() as session:
        await staff_members.add(session, "Sam", 555)
        await staff_members.add(session, "Ann")
        assert await staff_members.telegram_id_of(session, "sam") == 555
        assert await staff_members.telegram_id_of(session, "Ann") is None  # the staff group
        assert await staff_members.telegram_id_of(session, "Nobody") is None


# /staff


async def test_staff_command_adds_lists_and_removes(admins: AdminCommands) -> None:
    assert "No staff members yet" in await admins.command(ADMIN, "staff", "list")
    assert await admins.command(ADMIN, "staff", "add Sam Lee 555") == (
        "Added: Sam Lee (Telegram 555)."
    )
    assert await admins.command(ADMIN, "staff", 'add "Ann" 777') == "Added: Ann (Telegram 777)."
    assert await admins.command(ADMIN, "staff", "add sam lee 556") == (
        "Updated: Sam Lee (Telegram 556)."
    )
    assert await admins.command(ADMIN, "staff", "list") == (
        "Ann (Telegram 777)\nSam Lee (Telegram 556)"
    )
    assert await admins.command(ADMIN, "staff", "remove Ann") == "Removed Ann."
    assert await admins.command(ADMIN, "staff", "list") == "Sam Lee (Telegram 556)"


@pytest.mark.parametrize("text", ["", "help", "add Sam", "add Sam twelve", "remove", "list all"])
async def test_a_malformed_staff_command_gets_its_usage(admins: AdminCommands, text: str) -> None:
    assert await admins.command(ADMIN, "staff", text) == STAFF_USAGE


async def test_a_refused_staff_command_changes_nothing_and_is_audited(
    admins: AdminCommands, harness: Harness
) -> None:
    await admins.command(ADMIN, "staff", "add Sam 555")

    taken = await admins.command(ADMIN, "staff", "add Tom 555")
    unknown = await admins.command(ADMIN, "staff", "remove Nobody")

    assert taken == "Not done: Telegram id 555 is already Sam's"
    assert unknown == "Not done: no staff member named 'Nobody'"
    assert [m.name for m in await harness.rows(StaffMember)] == ["Sam"]
    events = await harness.rows(AuditEvent, AuditEvent.kind == "admin_command")
    assert [(e.actor, e.payload["command"], e.payload["reply"]) for e in events] == [
        ("telegram:1", "/staff add Sam 555", "Added: Sam (Telegram 555)."),
        ("telegram:1", "/staff add Tom 555", taken),
        ("telegram:1", "/staff remove Nobody", unknown),
    ]


# The registry


async def test_a_command_is_added_with_one_line_and_audited(
    admins: AdminCommands, harness: Harness
) -> None:
    async def jobs(session: Tx, admin: Admin, text: str) -> str:
        return f"jobs for {admin.actor}: {text or 'all'}"

    admins.register("jobs", jobs, "Scheduled jobs")

    assert admins.names() == ("agent", "audit", "staff", "jobs")
    assert admins.description("jobs") == "Scheduled jobs"
    assert await admins.command(ADMIN, "jobs", "") == "jobs for telegram:1: all"
    [event] = await harness.rows(AuditEvent, AuditEvent.kind == "admin_command")
    assert event.payload["command"] == "/jobs"
    with pytest.raises(ValueError, match="taken"):
        admins.register("staff", jobs)
    with pytest.raises(ValueError, match="not a command name"):
        admins.register("Bad Name", jobs)


async def test_agent_and_audit_go_through_the_same_door(admins: AdminCommands) -> None:
    assert "tester" in await admins.command(ADMIN, "agent", "list")
    assert "Usage" in await admins.command(ADMIN, "audit", "")
    assert "Commands: /agent, /audit, /staff" in await admins.command(ADMIN, "nope", "")


# On Telegram


async def test_staff_command_on_telegram_is_answered_and_in_the_menu(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start()
    try:
        [menu] = fake.calls_of("setMyCommands")
        assert "staff" in str(menu.params["commands"])
        fake.user_message(ADMIN_ID, "/Staff add Sam 555", first_name="Boss")
        await eventually(lambda: fake.sent(chat_id=ADMIN_ID))
        assert fake.sent(chat_id=ADMIN_ID)[0]["text"] == "Added: Sam (Telegram 555)."
        assert [m.telegram_id for m in await rig.rows(StaffMember)] == [555]
        assert await rig.rows(Message) == []  # a command, not a customer's message
    finally:
        await rig.stop()


def test_a_staff_members_own_hours_are_set_and_a_bad_spec_refused(tmp_path: Path) -> None:
    bot = Crmbot(tmp_path)
    assert bot("staff", "add", "Dana").returncode == 0
    assert bot("staff", "hours", "Dana", "mon-thu 08:00-16:00").stdout.strip() == (
        "Dana: mon-thu 08:00-16:00"
    )
    assert bot.sql("SELECT hours FROM staff_members") == [("mon-thu 08:00-16:00",)]
    refused = bot("staff", "hours", "Dana", "whenever")
    assert refused.returncode == 2 and "BUSINESS_HOURS" in refused.stderr
    assert bot("staff", "hours", "Dana").stdout.strip() == "Dana: BUSINESS_HOURS"
    assert bot.sql("SELECT hours FROM staff_members") == [(None,)]
