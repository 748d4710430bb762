"""`crmbot jobs`, run through the installed command on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.test_cli import TEMPLATES, Crmbot


@pytest.fixture
def bot(tmp_path: Path) -> Crmbot:
    crmbot = Crmbot(tmp_path)
    imported = crmbot("agent", "import", str(TEMPLATES))
    assert imported.returncode == 0, imported.stderr
    return crmbot


def test_jobs_list_shows_each_job_with_its_next_fire_time(bot: Crmbot) -> None:
    listed = bot("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith("pipeline-hygiene")
    assert "enabled" in line and "next 20" in line and "last never" in line


def test_pause_and_resume_a_job(bot: Crmbot) -> None:
    assert bot("jobs", "pause", "pipeline-hygiene").stdout.strip() == "paused pipeline-hygiene"
    assert "paused" in bot("jobs", "list").stdout
    again = bot("jobs", "pause", "pipeline-hygiene").stdout
    assert again.startswith("nothing to do")
    assert bot("jobs", "resume", "pipeline-hygiene").stdout.strip() == "resumed pipeline-hygiene"
    rows = bot.sql("SELECT kind FROM audit_events WHERE kind LIKE 'job_%' ORDER BY id")
    assert [kind for (kind,) in rows][-2:] == ["job_paused", "job_resumed"]


def test_jobs_run_fires_by_hand_and_records_the_result(bot: Crmbot) -> None:
    bot.sql(
        "INSERT INTO contacts (name, tags, lead_score, custom_fields, unreachable, created_at,"
        " updated_at) VALUES ('Ann', '[]', 0, '{}', 0, '2020-01-01', '2020-01-01')",
        "INSERT INTO deals (contact_id, title, stage, value, currency, owner, last_activity_at,"
        " created_at) VALUES (1, 'Acme', 'proposal', 0, 'USD', 'Dana',"
        " '2020-01-01 00:00:00.000000', '2020-01-01')",
    )
    fired = bot("jobs", "run", "pipeline-hygiene")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.startswith("fired pipeline-hygiene: status done, deals 1, owners 1")
    assert "last done" in bot("jobs", "list").stdout
    [(text,)] = bot.sql("SELECT text FROM outbox WHERE channel = 'staff'")
    assert "Acme" in text and "next: follow up on the proposal" in text


def test_preview_says_what_would_fire_and_sends_nothing(bot: Crmbot) -> None:
    shown = bot("jobs", "preview", "--hours", "168")
    assert shown.returncode == 0, shown.stderr
    assert "pipeline-hygiene: 5 firing(s)" in shown.stdout
    assert bot.sql("SELECT count(*) FROM outbox") == [(0,)]


def test_resume_needs_a_name_or_all(bot: Crmbot) -> None:
    refused = bot("jobs", "resume")
    assert refused.returncode == 2
    assert bot("jobs", "resume", "--all").returncode == 0
    unknown = bot("jobs", "run", "nope")
    assert unknown.returncode == 2 and "no job named 'nope'" in unknown.stderr
