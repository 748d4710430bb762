"""Help articles from files: front matter, headings into chunks, and imports that update."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.kb import MAX_CHUNK_CHARS, import_paths, parse_article, read_article, split_text
from bot.core.errors import ConfigurationError
from bot.store import kb
from bot.store.db import Database

MARKDOWN = """\
---
title: Reset your password
url: https://help.example.com/password
tags: [account]
---

# Reset your password

Click **Forgot password?** on the
[sign-in page](https://app.example.com/login "Sign in").

## The email does not arrive

- Check your spam folder.
- Ask for a new link.

### Company filters

Mail filters may hold it.

```
# not a heading
```

Underlined heading
------------------

Its text.
"""
HTML = """\
<html><head><title>Connect Telegram &amp; more</title>
<link rel="canonical" href="https://help.example.com/telegram"></head>
<body><h1>Connect Telegram &amp; more</h1><p>Create a bot with <b>BotFather</b>.</p>
<h2>Staff group</h2><p>Turn on topics.</p><ul><li>Add the bot</li><li>Send /setup</li></ul>
<script>var hidden = 1;</script></body></html>
"""


def sections(text: str, kind: str) -> list[tuple[str, str]]:
    article = parse_article(text, kind, path="/kb/a", name="a-file_name")
    return [(s.heading, s.text) for s in article.sections]


def test_markdown_is_cut_at_its_headings_with_the_title_first() -> None:
    article = parse_article(MARKDOWN, "markdown", path="/kb/password.md", name="password")
    assert (article.title, article.url) == (
        "Reset your password",
        "https://help.example.com/password",
    )
    assert [(s.heading, s.text) for s in article.sections] == [
        (
            "Reset your password",
            "Click Forgot password? on the sign-in page (https://app.example.com/login).",
        ),
        (
            "Reset your password › The email does not arrive",
            "- Check your spam folder.\n- Ask for a new link.",
        ),
        (
            "Reset your password › The email does not arrive › Company filters",
            "Mail filters may hold it.\n\n```\n# not a heading\n```",
        ),
        ("Reset your password › Underlined heading", "Its text."),
    ]
    assert not article.body.startswith("---")  # the front matter is not part of the body


def test_html_is_cut_at_its_headings_and_read_as_text() -> None:
    article = parse_article(HTML, "html", path="/kb/t.html", name="t")
    assert (article.title, article.url) == (
        "Connect Telegram & more",
        "https://help.example.com/telegram",
    )
    assert [(s.heading, s.text) for s in article.sections] == [
        ("Connect Telegram & more", "Create a bot with BotFather."),
        (
            "Connect Telegram & more › Staff group",
            "Turn on topics.\n\n* Add the bot\n* Send /setup",
        ),
    ]


def test_plain_text_has_no_headings_and_its_lines_are_joined() -> None:
    text = "First line\nwrapped here.\n\nSecond paragraph.\n"
    assert sections(text, "text") == [
        ("A file name", "First line wrapped here.\n\nSecond paragraph.")
    ]


def test_front_matter_title_wins_and_the_file_name_is_the_last_resort() -> None:
    assert parse_article("# Heading\ntext", "markdown", path="/a", name="x").title == "Heading"
    front = "---\ntitle: '  Given   title '\n---\n# Heading\ntext"
    article = parse_article(front, "markdown", path="/a", name="x")
    assert article.title == "Given title"
    # A first heading other than the title is part of the trail.
    assert [s.heading for s in article.sections] == ["Given title › Heading"]
    assert parse_article("just text", "markdown", path="/a", name="billing-faq").title == (
        "Billing faq"
    )


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("---\ntitle: [a, b\n---\n", "front matter is not YAML"),
        ("---\n- a list\n---\n", "front matter must be fields"),
        ("---\ntitle: 42\n---\n", "front matter title must be text"),
    ],
)
def test_bad_front_matter_names_the_file(front: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as raised:
        parse_article(front + "text", "markdown", path="/kb/bad.md", name="bad")
    assert "/kb/bad.md" in str(raised.value)


def test_a_long_section_is_cut_at_paragraphs_then_sentences_then_words() -> None:
    paragraph = " ".join(f"Sentence number {n} is here." for n in range(100))
    pieces = split_text(f"Short one.\n\n{paragraph}\n\n{'x' * 3000}")
    assert all(0 < len(p) <= MAX_CHUNK_CHARS for p in pieces)
    assert pieces[0] == "Short one." and pieces[1].startswith("Sentence number 0 is here.")
    assert all(p.endswith("here.") for p in pieces[1:-3])  # whole sentences
    assert "".join(pieces[-3:]).endswith("x" * 3000)
    assert split_text("a\n\nb\n\n\n\nc") == ["a\n\nb\n\nc"]  # small paragraphs share a chunk


def test_the_content_hash_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# A\ntext")
    first = read_article(path).content_hash
    assert read_article(path).content_hash == first
    path.write_text("# A\ntext!")
    assert read_article(path).content_hash != first


def test_unreadable_files_are_refused_with_their_name(tmp_path: Path) -> None:
    binary = tmp_path / "bad.md"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigurationError, match=r"bad\.md: not UTF-8"):
        read_article(binary)
    with pytest.raises(ConfigurationError, match="not an article"):
        read_article(tmp_path / "notes.pdf")


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


async def test_importing_again_updates_adds_and_removes_by_path_and_hash(
    db: Database, tmp_path: Path
) -> None:
    root = tmp_path / "kb"
    _write(
        root,
        {
            "a.md": "# Alpha\nAbout alpacas.",
            "sub/b.txt": "Bravo text about bears.",
            "c.html": "<h1>Charlie</h1><p>About cheetahs.</p>",
            ".hidden/d.md": "# Hidden",
            "e.pdf": "not an article",
        },
    )
    first = await import_paths(db, [root])
    assert [(c.change, c.shown, c.title) for c in first.changes] == [
        ("added", "a.md", "Alpha"),
        ("added", "c.html", "Charlie"),
        ("added", "sub/b.txt", "B"),
    ]

    (root / "a.md").write_text("# Alpha\nAbout llamas now.")
    (root / "c.html").unlink()
    _write(root, {"new.md": "# New\nNews."})
    second = await import_paths(db, [root])

    assert [(c.change, c.shown) for c in second.changes] == [
        ("updated", "a.md"),
        ("added", "new.md"),
        ("unchanged", "sub/b.txt"),
        ("removed", "c.html"),
    ]
    assert second.summary() == "knowledge base: 1 added, 1 updated, 1 unchanged, 1 removed"
    async with db.reading() as session:
        assert await kb.search(session, "alpacas cheetahs") == []
        [llamas] = await kb.search(session, "llamas")
        assert llamas.title == "Alpha"


async def test_a_single_file_import_removes_nothing(db: Database, tmp_path: Path) -> None:
    _write(tmp_path, {"kb/a.md": "# A\nalpha", "kb/b.md": "# B\nbravo", "one.md": "# One\nuno"})
    await import_paths(db, [tmp_path / "kb"])
    report = await import_paths(db, [tmp_path / "one.md", tmp_path / "kb" / "a.md"])
    assert [(c.change, c.shown) for c in report.changes] == [
        ("added", "one.md"),
        ("unchanged", "a.md"),
    ]
    async with db.reading() as session:
        assert len(await kb.list_articles(session)) == 3


async def test_a_broken_file_stops_the_import_before_anything_is_stored(
    db: Database, tmp_path: Path
) -> None:
    _write(tmp_path, {"a.md": "# A\nalpha", "b.md": "---\ntitle: [\n---\nbroken"})
    with pytest.raises(ConfigurationError, match=r"b\.md"):
        await import_paths(db, [tmp_path])
    with pytest.raises(ConfigurationError, match="no such file or directory"):
        await import_paths(db, [tmp_path / "missing"])
    async with db.reading() as session:
        assert await kb.list_articles(session) == []
