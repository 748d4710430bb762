"""Hostile sizes and shapes: a YAML bomb, recursive aliases, a 25 MB email, 10,000 lines, a
CSV cell the size of a file. Each is refused or cut with a clear error, quickly, and nothing
is read whole into something that grows with the attacker's effort."""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from agents.definition import load_definition_file
from agents.kb import read_article
from bot.app.cli_import import check_contact_columns, read_table
from bot.core.errors import ConfigurationError
from channels.email.parse import MAX_TEXT, parse_email

LAUGHS = """\
name: bomb
goal: a goal long enough to pass
persona: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
rules: *g
"""


@pytest.mark.parametrize(
    "text",
    [LAUGHS, LAUGHS.replace("rules: *g", "handoff_triggers: *g"), "name: x\nrules: &r [*r]\n"],
    ids=["billion-laughs", "laughs-in-a-list-of-strings", "recursive-alias"],
)
def test_a_yaml_bomb_is_refused_at_once_naming_the_field(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"bomb\.yaml: field"):
        load_definition_file(path)
    assert time.monotonic() - started < 5  # generous: it takes milliseconds


def test_a_bomb_in_an_articles_front_matter_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "article.md"
    path.write_text("---\n" + LAUGHS.replace("rules: *g", "title: *g") + "---\n# Hi\n\ntext\n")
    with pytest.raises(ConfigurationError, match="title must be text"):
        read_article(path)


def test_a_25_mb_email_of_10000_lines_is_kept_to_a_readable_size() -> None:
    mail = EmailMessage()
    mail["From"] = "Ann <ann@example.com>"
    mail["Subject"] = "big"
    line = "All work and no play makes Jack a dull boy, again and again and again. " * 37
    mail.set_content("My question is at the top.\n" + "\n".join([line] * 10_000))
    raw = mail.as_bytes()
    assert len(raw) > 25 * 1024 * 1024

    parsed = parse_email(raw)

    assert parsed.text.startswith("My question is at the top.")
    assert len(parsed.text) <= MAX_TEXT and len(parsed.full_text) <= MAX_TEXT


def test_a_csv_cell_as_big_as_a_file_stops_the_import_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("name,email\nAnn,ann@example.com\n" + "Bob," + "x" * 10_000_000 + "\n")
    with pytest.raises(ConfigurationError, match="line 3"):
        read_table(path, check_contact_columns)
