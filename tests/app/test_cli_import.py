"""`crmbot import contacts|deals FILE.csv`, run as a person would, on a SQLite file."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.app.test_cli import CRMBOT, Crmbot, _clean_env, error_line

CONTACTS = """\
 Name ,EMAIL,phone,telegram_id,company,tags,owner,source,Plan Tier,timezone
Ann,ann@example.com,+1 555,101,Acme,vip;trial;vip,Sam,web,gold,Europe/Berlin
Bob,bob@example.com,,,,,,,,
"""
REJECTS = """\
name,email,telegram_id,timezone
Cat,,,
Dan,dan-at-example.com,,
"Eve
on two lines",eve@example.com,12x,
Fay,fay@example.com,,Mars/Olympus
Gus,bob@example.com,101,
Hal,hal@example.com,,UTC
"""


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


def _file(crmbot: Crmbot, name: str, text: str) -> str:
    path = crmbot.workdir / name
    path.write_text(text)
    return str(path)


def _ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar, no log lines off a terminal
    return result.stdout.splitlines()


def test_contacts_are_created_with_their_tags_and_custom_fields(crmbot: Crmbot) -> None:
    out = _ok(crmbot("import", "contacts", _file(crmbot, "c.csv", CONTACTS)))

    assert out == ["contacts: 2 created, 0 updated, 0 unchanged, 0 rejected"]
    [ann] = crmbot.sql(
        "SELECT name, phone, telegram_user_id, tags, custom_fields, owner, lead_source, timezone"
        " FROM contacts WHERE email = 'ann@example.com'"
    )
    assert ann[:3] == ("Ann", "+1 555", 101)
    assert json.loads(str(ann[3])) == ["vip", "trial"]
    assert json.loads(str(ann[4])) == {"company": "Acme", "plan tier": "gold"}
    assert ann[5:] == ("Sam", "web", "Europe/Berlin")


def test_each_rejected_row_is_named_by_its_line_and_the_rest_are_imported(
    crmbot: Crmbot,
) -> None:
    _ok(crmbot("import", "contacts", _file(crmbot, "c.csv", CONTACTS)))

    out = _ok(crmbot("import", "contacts", _file(crmbot, "r.csv", REJECTS)))

    assert out == [
        "row 2: no email and no telegram_id",
        "row 3: bad email 'dan-at-example.com'",
        "row 4: bad telegram_id '12x' (a Telegram user id is a whole number)",
        "row 6: unknown timezone 'Mars/Olympus' (an IANA name: Europe/Berlin)",
        "row 7: another contact already has this telegram_id",  # Bob's email, Ann's id
        "contacts: 1 created, 0 updated, 0 unchanged, 5 rejected",
    ]
    assert crmbot.sql("SELECT name FROM contacts ORDER BY id") == [("Ann",), ("Bob",), ("Hal",)]
    assert crmbot.sql("SELECT telegram_user_id FROM contacts WHERE name = 'Bob'") == [(None,)]


def test_importing_the_same_file_again_changes_nothing(crmbot: Crmbot) -> None:
    path = _file(crmbot, "c.csv", CONTACTS)
    _ok(crmbot("import", "contacts", path))
    before = crmbot.sql("SELECT * FROM contacts ORDER BY id")

    out = _ok(crmbot("import", "contacts", path))

    assert out == ["contacts: 0 created, 0 updated, 2 unchanged, 0 rejected"]
    assert crmbot.sql("SELECT * FROM contacts ORDER BY id") == before


def test_a_changed_row_updates_its_contact(crmbot: Crmbot) -> None:
    _ok(crmbot("import", "contacts", _file(crmbot, "c.csv", CONTACTS)))

    changed = "email,tags,phone\nANN@example.com,partner,+1 777\n"
    out = _ok(crmbot("import", "contacts", _file(crmbot, "u.csv", changed)))

    assert out == ["contacts: 0 created, 1 updated, 0 unchanged, 0 rejected"]
    [(tags, phone)] = crmbot.sql("SELECT tags, phone FROM contacts WHERE name = 'Ann'")
    assert (json.loads(str(tags)), phone) == (["vip", "trial", "partner"], "+1 777")


DEALS = """\
title,contact_email,owner,stage,value,last_activity_at
Pilot,ann@example.com,sam,proposal,1200.50,2024-05-01
Renewal,bob@example.com,Zed,,,
Upsell,bob@example.com,,Closed Won,,
Seats,bob@example.com,,,12 EUR,
Call,bob@example.com,,,,yesterday
Nobody's,nobody@example.com,,,,
Audit,bob@example.com,,new,99,2024-05-01T10:00:00+02:00
"""


def test_deals_are_imported_and_an_unknown_owner_is_rejected(crmbot: Crmbot) -> None:
    _ok(crmbot("import", "contacts", _file(crmbot, "c.csv", CONTACTS)))
    _ok(crmbot("staff", "add", "Sam", "--telegram-id", "555"))
    path = _file(crmbot, "d.csv", DEALS)

    out = _ok(crmbot("import", "deals", path))

    assert out == [
        "row 3: owner 'Zed' is not a staff member (crmbot staff add)",
        "row 4: unknown stage 'Closed Won' (one of new, qualified, meeting_booked, proposal, "
        "negotiation, won, lost)",
        "row 5: bad value '12 EUR' (a decimal number, e.g. 1200.50)",
        "row 6: bad last_activity_at 'yesterday' (ISO 8601, e.g. 2024-05-01T14:30:00Z)",
        "row 7: no contact with email nobody@example.com (import the contacts first)",
        "deals: 2 created, 0 updated, 0 unchanged, 5 rejected",
    ]
    rows = crmbot.sql("SELECT title, owner, stage, value, last_activity_at FROM deals ORDER BY id")
    assert rows == [
        ("Pilot", "Sam", "proposal", 1200.5, "2024-05-01 00:00:00.000000"),  # a date is UTC
        ("Audit", None, "new", 99, "2024-05-01 08:00:00.000000"),
    ]
    assert _ok(crmbot("import", "deals", path))[-1] == (
        "deals: 0 created, 0 updated, 2 unchanged, 5 rejected"
    )


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("contacts", "name,phone\nAnn,1\n", "missing column email (or telegram_id)"),
        ("deals", "title,value\nPilot,1\n", "missing column contact_email"),
        ("deals", "title,contact_email,vaule\n", "unknown column vaule"),
        ("contacts", "email,Email\n", "column email appears more than once"),
        ("contacts", "", "is empty"),
    ],
    ids=["contacts-no-email", "deals-no-email", "deals-unknown", "repeated", "empty"],
)
def test_a_header_problem_is_one_error_line_and_imports_nothing(
    crmbot: Crmbot, kind: str, text: str, message: str
) -> None:
    result = crmbot("import", kind, _file(crmbot, "h.csv", text))

    assert result.returncode == 2
    assert message in error_line(result)
    assert result.stdout == ""


def test_a_missing_file_is_one_error_line(crmbot: Crmbot) -> None:
    result = crmbot("import", "contacts", "nope.csv")

    assert result.returncode == 2
    assert "no file nope.csv" in error_line(result)


def _many(count: int, bad_every: int) -> str:
    lines = ["email,name"]
    lines += [
        f"{'broken' if i % bad_every == 0 else f'p{i}@example.com'},P{i}" for i in range(count)
    ]
    return "\n".join(lines) + "\n"


def test_a_long_file_is_imported_in_batches(crmbot: Crmbot) -> None:
    # 650 rows: two transactions; a rejected row in each, the lines counted across both.
    out = _ok(crmbot("import", "contacts", _file(crmbot, "many.csv", _many(650, 600))))

    assert out == [
        "row 2: bad email 'broken'",
        "row 602: bad email 'broken'",
        "contacts: 648 created, 0 updated, 0 unchanged, 2 rejected",
    ]
    assert crmbot.sql("SELECT count(*) FROM contacts") == [(648,)]


def test_a_progress_bar_is_shown_on_a_terminal_and_the_report_stays_on_stdout(
    crmbot: Crmbot,
) -> None:
    path = _file(crmbot, "many.csv", _many(250, 1000))
    env = {**_clean_env(), "DATABASE_URL": f"sqlite+aiosqlite:///{crmbot.db_path}"}
    terminal, stderr = pty.openpty()
    with subprocess.Popen(
        [str(CRMBOT), "import", "contacts", path],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=crmbot.workdir,
        text=True,
    ) as process:
        os.close(stderr)
        shown = b""
        while chunk := _read(terminal):
            shown += chunk
        stdout = process.stdout.read() if process.stdout else ""
    os.close(terminal)

    assert process.returncode == 0
    assert b"importing" in shown and b"/250" in shown
    assert stdout.splitlines() == [
        "row 2: bad email 'broken'",
        "contacts: 249 created, 0 updated, 0 unchanged, 1 rejected",
    ]


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the other end closed: the process is done
        return b""
