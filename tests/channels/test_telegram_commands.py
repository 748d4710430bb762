"""Commands are read the way Telegram's clients match them: in any case, with or without @Bot."""

from __future__ import annotations

import pytest

from channels.telegram.commands import Command, parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/note call back", Command("note", None, "call back")),
        ("/NOTE call back", Command("note", None, "call back")),
        ("/Agent@CRM_Test_Bot list", Command("agent", "crm_test_bot", "list")),
        ("/close", Command("close", None, "")),
        ("/note\nline one\nline two", Command("note", None, "line one\nline two")),
    ],
)
def test_a_command_is_read_in_any_case(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["", None, "hello /note", "/", "//note", "/note-x", " /note"])
def test_text_that_does_not_start_with_a_command_is_none(text: str | None) -> None:
    assert parse_command(text) is None


def test_a_command_naming_another_bot_is_not_ours() -> None:
    assert parse_command("/note@OtherBot x").is_for("crm_test_bot") is False  # type: ignore[union-attr]
    assert parse_command("/note@Crm_Test_Bot x").is_for("crm_test_bot") is True  # type: ignore[union-attr]
    assert parse_command("/note x").is_for("crm_test_bot") is True  # type: ignore[union-attr]
