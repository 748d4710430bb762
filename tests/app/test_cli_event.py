"""`crmbot event`, run through the installed command on a SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.store.db import Database
from bot.store.leads import LeadFields, upsert_lead
from tests.app.test_cli import Crmbot, error_line

NUDGER = """\
name: trial-nudger
goal: Help a new trial user get started with the product.
persona: A friendly onboarding guide.
triggers:
  - type: event
    event: trial.started
"""


def _prepare(workdir: Path) -> Crmbot:
    """A database with one contact (id 1) and an agent woken by `trial.started`."""
    bot = Crmbot(workdir)
    (workdir / "nudger.yaml").write_text(NUDGER)
    imported = bot("agent", "import", "nudger.yaml")
    assert imported.returncode == 0, imported.stderr

    async def add_contact() -> None:
        db = Database(f"sqlite+aiosqlite:///{bot.db_path}")
        try:
            async with db.transaction() as session:
                lead = LeadFields(email="ann@example.com", telegram_id=4242, external_id="crm-1")
                await upsert_lead(session, lead)
        finally:
            await db.dispose()

    asyncio.run(add_contact())
    return bot


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return _prepare(tmp_path)


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Crmbot:
    """Shared by the tests of events that are refused, which store nothing."""
    return _prepare(tmp_path_factory.mktemp("untouched"))


def test_an_event_is_recorded_and_wakes_the_agent(crmbot: Crmbot) -> None:
    result = crmbot("event", "ann@example.com", "trial.started", "--data", '{"plan": "pro"}')

    assert result.returncode == 0, result.stderr
    assert result.stdout == "event 1 recorded for contact 1; woke trial-nudger\n"
    assert crmbot.sql("SELECT contact_id, type, data, source FROM contact_events") == [
        (1, "trial.started", '{"plan": "pro"}', "cli")
    ]
    assert crmbot.sql("SELECT agent_name, status FROM wakeups") == [("trial-nudger", "pending")]


def test_every_way_of_naming_the_contact_finds_it(crmbot: Crmbot) -> None:
    for n, contact in enumerate(["1", "ANN@example.com", "tg:4242", "ext:crm-1"], 1):
        result = crmbot("event", contact, "active_day")

        assert result.returncode == 0, result.stderr
        assert result.stdout == f"event {n} recorded for contact 1; woke no agent\n"


def test_the_same_id_twice_is_recorded_once(crmbot: Crmbot) -> None:
    first = crmbot("event", "1", "trial.started", "--id", "billing-7")
    second = crmbot("event", "1", "trial.started", "--id", "billing-7")

    assert first.returncode == second.returncode == 0
    assert second.stdout == (
        "event 1 was recorded before with this --id; nothing stored or woken again\n"
    )
    assert crmbot.sql("SELECT count(*) FROM contact_events") == [(1,)]
    assert crmbot.sql("SELECT count(*) FROM wakeups") == [(1,)]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["1", "x", "--data", "{plan: pro}"], "--data is not JSON"),
        (["1", "x", "--data", "[1, 2]"], "data must be a JSON object"),
        (["1", "Trial Started"], "type must be 1-80 characters"),
        (["nobody@example.com", "x"], "no contact with email nobody@example.com"),
        (["99", "x"], "no contact with id 99"),
        (["tg:ann", "x"], "contact telegram_id must be a positive integer"),
        (["ann", "x"], "CONTACT 'ann' is none of: a contact id, an email"),
    ],
)
def test_a_bad_event_is_one_line_and_exit_2(
    untouched: Crmbot, args: list[str], reason: str
) -> None:
    result = untouched("event", *args)

    assert result.returncode == 2
    assert reason in error_line(result)
    assert untouched.sql("SELECT count(*) FROM contact_events") == [(0,)]
