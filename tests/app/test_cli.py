"""The installed `crmbot` command, run as a person would run it, on a SQLite file."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

CRMBOT = Path(sys.executable).parent / "crmbot"
TEMPLATES = Path(__file__).resolve().parents[2] / "agents" / "templates"
SHIPPED = [
    "lead-qualifying",
    "outbound-research",
    "pipeline-hygiene",
    "support-deflection",
    "trial-onboarding",
]
GOOD_AGENT = """\
name: {name}
goal: Answer the contact's questions using only tool results.
persona: A test agent.
max_steps: {max_steps}
tools: [{tools}]
"""


def _clean_env() -> dict[str, str]:
    """The environment without anything that would configure crmbot from outside the test."""
    return {
        name: value
        for name, value in os.environ.items()
        if not (
            name.endswith(("_API_KEY", "_BASE_URL"))
            or name.startswith(("LLM_", "TELEGRAM_"))
            or name in {"DATABASE_URL", "DEFAULT_AGENT"}
        )
    }


class Crmbot:
    """Runs `crmbot` in `workdir` against the SQLite file `workdir/crm.db`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db_path = workdir / "crm.db"

    def __call__(
        self, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            **_clean_env(),
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            **env,
        }
        return subprocess.run(
            [str(CRMBOT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=environment,
            timeout=60,
            check=False,
        )

    def sql(self, *statements: str) -> list[tuple[object, ...]]:
        """Run SQL on the file directly, as someone with access to the server could."""
        with sqlite3.connect(self.db_path) as connection:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                rows = connection.execute(statement).fetchall()
        connection.close()
        return rows


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crmbot: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


@pytest.fixture(scope="module")
def chatted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Crmbot, str]:
    """A database with the shipped agents and one two-line console chat; (crmbot, chat output)."""
    crmbot = Crmbot(tmp_path_factory.mktemp("chatted"))
    imported = crmbot("agent", "import", str(TEMPLATES))
    assert imported.returncode == 0, imported.stderr
    chat = crmbot("chat", "--contact", "Ann", stdin="hi\nI run a 12-person agency\n")
    assert chat.returncode == 0, chat.stderr
    return crmbot, chat.stdout


def test_importing_the_shipped_templates_stores_the_five_agents(crmbot: Crmbot) -> None:
    imported = crmbot("agent", "import", str(TEMPLATES))

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == [f"created {name}" for name in SHIPPED]
    listed = crmbot("agent", "list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == SHIPPED
    assert all(" enabled " in line for line in listed.stdout.splitlines())


def test_listing_with_no_agents_says_how_to_import_them(crmbot: Crmbot) -> None:
    listed = crmbot("agent", "list")

    assert listed.returncode == 0
    assert "no agents" in listed.stdout and "crmbot agent import" in listed.stdout


def test_show_prints_an_agents_definition_as_yaml(chatted: tuple[Crmbot, str]) -> None:
    crmbot, _ = chatted

    shown = crmbot("agent", "show", "lead-qualifying")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "# enabled, version 1"
    assert "name: lead-qualifying" in lines
    assert "max_steps: 8" in lines
    assert "- key: team_size" in lines


def test_showing_an_unknown_agent_is_one_error_line(chatted: tuple[Crmbot, str]) -> None:
    crmbot, _ = chatted

    shown = crmbot("agent", "show", "nobody")

    assert shown.returncode == 2
    assert "no agent named 'nobody'" in error_line(shown)


@pytest.mark.parametrize(
    ("max_steps", "tools", "field", "reason"),
    [
        (0, "send_message", "field max_steps", "greater than or equal to 1"),
        (5, "send_message, launch_missiles", "field tools.1", "Input should be 'send_message'"),
    ],
    ids=["max-steps-zero", "unknown-tool"],
)
def test_an_invalid_definition_is_refused_naming_the_field_and_imports_nothing(
    crmbot: Crmbot, max_steps: int, tools: str, field: str, reason: str
) -> None:
    folder = crmbot.workdir / "agents"
    folder.mkdir()
    (folder / "a-good.yaml").write_text(GOOD_AGENT.format(name="good", max_steps=5, tools=""))
    bad = folder / "b-bad.yaml"
    bad.write_text(GOOD_AGENT.format(name="bad", max_steps=max_steps, tools=tools))

    imported = crmbot("agent", "import", str(folder))

    assert imported.returncode == 2
    line = error_line(imported)
    assert str(bad) in line and field in line and reason in line
    assert imported.stdout == ""
    assert "no agents" in crmbot("agent", "list").stdout


def test_piped_chat_greets_asks_in_turn_and_exits_at_end_of_input(
    chatted: tuple[Crmbot, str],
) -> None:
    _, output = chatted

    assert output.splitlines() == [
        "bot> Hi, thanks for getting in touch! "
        "What would you like crmbot to help your business with?",
        "bot> Thanks! How many people are on your team?",
    ]


def test_chatting_with_an_unknown_agent_is_one_error_line(chatted: tuple[Crmbot, str]) -> None:
    crmbot, _ = chatted

    chat = crmbot("chat", "--agent", "nobody", stdin="hi\n")

    assert chat.returncode == 2
    assert "no agent named 'nobody'" in error_line(chat)


def test_audit_show_prints_what_a_run_saw_and_did(chatted: tuple[Crmbot, str]) -> None:
    crmbot, _ = chatted
    [(run_id,)] = crmbot.sql("SELECT run_id FROM messages WHERE text = 'I run a 12-person agency'")

    shown = crmbot("audit", "show", str(run_id))

    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith(f"run {run_id}  agent lead-qualifying")
    assert "input: I run a 12-person agency" in out
    assert "model call, step 1: offline/offline-policy" in out
    assert "model call, step 2: offline/offline-policy" in out
    assert "asked for: record_answer(" in out
    assert 'tool record_answer({"answer": "I run a 12-person agency", "key": "need"})' in out
    assert "tool send_message(" in out and "How many people are on your team?" in out
    assert "run finished" in out


def test_audit_show_of_an_unknown_run_is_one_error_line(chatted: tuple[Crmbot, str]) -> None:
    crmbot, _ = chatted

    shown = crmbot("audit", "show", "0" * 32)

    assert shown.returncode == 2
    assert "no run with id" in error_line(shown)


def test_audit_verify_passes_an_intact_chain_and_fails_a_tampered_one(
    chatted: tuple[Crmbot, str], tmp_path: Path
) -> None:
    source, _ = chatted
    intact = source("audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "chain intact" in intact.stdout
    assert intact.stdout.strip().endswith("not sealed yet")  # no sealer ran: only the links

    crmbot = Crmbot(tmp_path)  # tamper with a copy; the shared database stays intact
    for suffix in ("", "-wal", "-shm"):
        original = Path(f"{source.db_path}{suffix}")
        if original.exists():
            shutil.copy(original, f"{crmbot.db_path}{suffix}")
    crmbot.sql(
        "DROP TRIGGER audit_events_no_update",
        "UPDATE audit_events SET payload = '{\"input\": []}' WHERE id = 3",
    )

    tampered = crmbot("audit", "verify")

    assert tampered.returncode == 1
    (line,) = [line for line in tampered.stdout.splitlines() if line.startswith("TAMPERED")]
    assert line.endswith("content was changed after it was written")
    assert "1 problem(s)" in tampered.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"LLM_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"LLM_TIMEOUT_SECONDS": "abc"}, "LLM_TIMEOUT_SECONDS"),
        ({"DATABASE_URL": "sqlite:///crm.db"}, "DATABASE_URL"),
    ],
    ids=["provider-without-key", "not-a-number", "sync-database-driver"],
)
def test_a_bad_setting_is_one_error_line_naming_it(
    crmbot: Crmbot, env: dict[str, str], setting: str
) -> None:
    result = crmbot("agent", "list", **env)

    assert result.returncode == 2
    assert setting in error_line(result)
    assert result.stdout == ""


def test_db_upgrade_prints_the_schema_revision(crmbot: Crmbot) -> None:
    upgraded = crmbot("db", "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    [(revision,)] = crmbot.sql("SELECT version_num FROM alembic_version")
    assert upgraded.stdout.strip() == f"database at revision {revision} (head {revision})"


def test_an_unreachable_database_is_one_error_line_without_its_password(crmbot: Crmbot) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://crm:s3cr%40t-pw@127.0.0.1:{port}/crm"

    result = crmbot("agent", "list", DATABASE_URL=url)

    assert result.returncode == 2
    line = error_line(result)
    assert f"cannot open the database postgresql+asyncpg://crm:***@127.0.0.1:{port}/crm" in line
    assert "s3cr" not in result.stderr + result.stdout
