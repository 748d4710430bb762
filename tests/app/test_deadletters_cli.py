"""`crmbot deadletters list|show|retry`, run as a person would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.test_cli import Crmbot, error_line


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


PAYLOAD = {"update_id": 77, "message": {"text": "keep me \ud800"}}


def _seed(crmbot: Crmbot) -> None:
    assert crmbot("db", "upgrade").returncode == 0
    raw = json.dumps(PAYLOAD, ensure_ascii=True)
    crmbot.sql(
        "INSERT INTO dead_letters (source, kind, ref, fingerprint, payload, error, status, seen,"
        " created_at) VALUES ('telegram', 'update_malformed', 'update 77', 'f1', "
        f"CAST('{raw}' AS BLOB), 'update.message: missing field date', 'new', 1, "
        "'2026-12-01 10:00:00.000000')"
    )


def test_listing_no_dead_letters_says_so(crmbot: Crmbot) -> None:
    listed = crmbot("deadletters", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no dead letters"


def test_a_dead_letter_is_listed_shown_whole_and_queued_for_retry(
    crmbot: Crmbot,
) -> None:
    _seed(crmbot)

    listed = crmbot("deadletters", "list")
    assert listed.returncode == 0, listed.stderr
    assert "telegram" in listed.stdout and "update 77" in listed.stdout
    shown = crmbot("deadletters", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "missing field date" in shown.stdout
    assert json.loads(shown.stdout[shown.stdout.index("{") :]) == PAYLOAD  # exactly as kept
    retried = crmbot("deadletters", "retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert crmbot.sql("SELECT status FROM dead_letters") == [("queued",)]


def test_retrying_an_unknown_dead_letter_is_one_error_line(crmbot: Crmbot) -> None:
    retried = crmbot("deadletters", "retry", "42")
    assert retried.returncode == 2
    assert "no dead letter with id 42" in error_line(retried)
