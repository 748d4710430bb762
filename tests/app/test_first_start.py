"""A newcomer's first minute: the shipped agents answer at once, and the chat stays readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.test_cli import SHIPPED, Crmbot

GREETING = (
    "bot> Hi, thanks for getting in touch! What would you like crmbot to help your business with?"
)


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


def test_chat_on_a_fresh_database_is_answered_by_the_shipped_agents(crmbot: Crmbot) -> None:
    chat = crmbot("chat", stdin="hi\n")

    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.splitlines() == [GREETING]
    listed = crmbot("agent", "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == SHIPPED


def test_an_agent_edited_after_the_first_start_is_kept_on_later_starts(crmbot: Crmbot) -> None:
    assert crmbot("chat", stdin="hi\n").returncode == 0
    assert crmbot("agent", "disable", "lead-qualifying").returncode == 0

    assert crmbot("chat", stdin="hi\n").returncode == 0

    listed = crmbot("agent", "list").stdout
    assert "lead-qualifying        disabled" in listed


def test_the_console_chat_shows_the_conversation_and_logs_go_to_log_file(
    crmbot: Crmbot, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "crmbot.log"

    chat = crmbot("chat", stdin="hi\n", LOG_FILE=str(log_file))

    assert chat.returncode == 0, chat.stderr
    assert " INFO " not in chat.stderr and " INFO " not in chat.stdout
    assert " INFO " in log_file.read_text()  # everything at LOG_LEVEL is in the file


def test_an_explicit_log_level_brings_info_lines_back_to_the_terminal(crmbot: Crmbot) -> None:
    chat = crmbot("chat", stdin="hi\n", LOG_LEVEL="INFO")

    assert " INFO " in chat.stderr
    assert chat.stdout.splitlines() == [GREETING]
