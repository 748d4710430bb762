"""`crmbot kb import|list|search`, run as a person would, on a SQLite file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app.test_cli import TEMPLATES, Crmbot, error_line

SAMPLE = TEMPLATES / "kb"


@pytest.fixture
def crmbot(tmp_path: Path) -> Crmbot:
    return Crmbot(tmp_path)


@pytest.fixture
def articles(crmbot: Crmbot) -> Path:
    """A copy of the sample knowledge base to change."""
    return Path(shutil.copytree(SAMPLE, crmbot.workdir / "help"))


def test_import_list_and_search_the_sample(crmbot: Crmbot, articles: Path) -> None:
    imported = crmbot("kb", "import", str(articles))
    assert imported.returncode == 0, imported.stderr
    lines = imported.stdout.splitlines()
    assert "added    password-reset.md (Reset your password, 4 chunks)" in lines
    assert (
        "added    integrations.html (Integrations: Zapier, webhooks and the API, 6 chunks)" in lines
    )
    assert lines[-1] == "knowledge base: 14 added, 0 updated, 0 unchanged, 0 removed"

    listed = crmbot("kb", "list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 14
    [password] = [line for line in listed.stdout.splitlines() if "Reset your password" in line]
    assert "(4 chunks)  https://help.parrotdesk.example/password" in password
    assert password.endswith("help/password-reset.md")

    found = crmbot("kb", "search", "I forgot my password", "--limit", "2")
    assert found.returncode == 0, found.stderr
    first, url, passage, second, *_ = found.stdout.splitlines()
    assert first.startswith("1. score 1.000  Reset your password › Request a reset link")
    assert url == "   https://help.parrotdesk.example/password"
    assert passage.startswith("   On the sign-in page click Forgot password?")
    assert second.startswith("2. score ")


def test_a_second_import_says_what_changed(crmbot: Crmbot, articles: Path) -> None:
    assert crmbot("kb", "import", str(articles)).returncode == 0
    (articles / "free-trial.md").write_text("---\ntitle: The free trial\n---\nNow 30 days.\n")
    (articles / "integrations.html").unlink()
    (articles / "new").mkdir()
    (articles / "new" / "refunds.txt").write_text("Refunds are paid within 5 working days.\n")

    again = crmbot("kb", "import", str(articles))

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "updated  free-trial.md (The free trial, 1 chunk)",
        "added    new/refunds.txt (Refunds, 1 chunk)",
        "removed  integrations.html",
        "knowledge base: 1 added, 1 updated, 12 unchanged, 1 removed",
    ]
    assert "Now 30 days." in crmbot("kb", "search", "free trial days", "--full").stdout
    assert "no matching passage" in crmbot("kb", "search", "zapier webhooks").stdout


def test_an_empty_knowledge_base_says_so(crmbot: Crmbot) -> None:
    assert "the knowledge base is empty" in crmbot("kb", "list").stdout
    assert crmbot("kb", "search", "password").stdout == "no matching passage\n"


def test_bad_paths_and_files_are_one_line_errors(crmbot: Crmbot, articles: Path) -> None:
    missing = crmbot("kb", "import", str(crmbot.workdir / "nowhere"))
    assert missing.returncode == 2
    assert error_line(missing).endswith("nowhere: no such file or directory")

    (articles / "broken.md").write_text("---\ntitle: [unclosed\n---\ntext\n")
    broken = crmbot("kb", "import", str(articles))
    assert broken.returncode == 2
    assert "broken.md: front matter is not YAML: line 2: " in error_line(broken)
    assert "the knowledge base is empty" in crmbot("kb", "list").stdout  # nothing stored
