"""`crmbot research` and `crmbot drafts`, run as a person would, on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.app.test_cli import CRMBOT, Crmbot, _clean_env
from tests.support.commands import run_crmbot
from tests.support.websites import LocalSite, acme_site


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with acme_site() as running:
        yield running


class Research:
    """`crmbot` on the file `crm.db` of a directory, from async tests."""

    def __init__(self, workdir: Path) -> None:
        self.files = Crmbot(workdir)
        self.env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.files.db_path}",
            "RESEARCH_ALLOW_PRIVATE": "true",
        }

    async def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return await run_crmbot(self.files.workdir, *args, **(self.env | env))

    def csv(self, text: str) -> str:
        path = self.files.workdir / "prospects.csv"
        path.write_text(text)
        return str(path)


@pytest.fixture
def crmbot(tmp_path: Path) -> Research:
    return Research(tmp_path)


async def test_each_row_that_cannot_be_researched_says_why(
    crmbot: Research, site: LocalSite
) -> None:
    await crmbot("staff", "add", "Dana")
    rows = (
        "Name,Email,Company,Website,Feed,Notes,Owner\n"
        f"Ann,ann@acme.test,Acme,{site.url('/')},,Met at a fair,dana\n"
        f"Bob,,Roe,{site.url('/')},,,\n"
        "Cat,cat@acme.test,,,,,\n"
        f"Dan,dan@acme.test,,{site.url('/')},,,Zed\n"
        f"Eve,eve@acme.test,,{site.url('/brochure.pdf')},{site.url('/not-a-feed')},,\n"
        f"Fay,fay@acme.test,,ftp://files.acme.test/,,,\n"
    )

    result = await crmbot("research", crmbot.csv(rows), RESEARCH_CONCURRENCY="1")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar off a terminal
    assert result.stdout.splitlines() == [
        "row 3: no email: an opener is sent by email",
        "row 4: no website and no feed: nothing to read about them",
        "row 5: owner 'Zed' is not a staff member (crmbot staff add)",
        f"row 6: nothing fetched to ground an opener (website: {site.url('/brochure.pdf')} is "
        f"application/pdf, not a web page; feed: {site.url('/not-a-feed')} is not an RSS or "
        "Atom feed)",
        "row 7: nothing fetched to ground an opener (website: ftp://files.acme.test/: only "
        "http and https URLs are fetched)",
        "research: 1 drafted, 0 drafted before, 5 failed; review them: "
        "crmbot drafts list --status pending",
    ]
    [(name, tags, custom, owner)] = crmbot.files.sql(
        "SELECT name, tags, custom_fields, owner FROM contacts WHERE email = 'ann@acme.test'"
    )
    assert name == "Ann" and json.loads(str(tags)) == ["prospect"] and owner == "Dana"
    assert json.loads(str(custom)) == {"company": "Acme", "website": site.url("/")}
    assert crmbot.files.sql("SELECT count(*) FROM outbox WHERE channel = 'email'") == [(0,)]


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("name,website\n", "missing column email: an opener is sent by email"),
        ("name,email,notes\n", "missing column website or feed: nothing to read about anyone"),
    ],
)
async def test_a_file_without_the_columns_it_needs_is_one_error_line(
    crmbot: Research, header: str, error: str
) -> None:
    result = await crmbot("research", crmbot.csv(header))

    assert result.returncode == 2
    assert result.stderr == f"crmbot: error: {error}\n"


async def test_an_agent_that_could_send_cannot_research(crmbot: Research) -> None:
    agent = crmbot.files.workdir / "sender.yaml"
    agent.write_text(
        "name: sender\ngoal: Write to prospects directly.\npersona: A pushy agent.\n"
        "tools: [send_message]\n"
    )
    assert (await crmbot("agent", "import", str(agent))).returncode == 0
    csv = crmbot.csv("email,website\nann@acme.test,https://acme.test/\n")

    result = await crmbot("research", csv, "--agent", "sender")

    assert result.returncode == 2
    assert result.stderr.startswith(
        "crmbot: error: agent sender has send_message in its tools: research only drafts"
    )
    assert crmbot.files.sql("SELECT count(*) FROM contacts") == [(0,)]


async def test_drafts_are_listed_shown_and_rejected_by_a_staff_member(
    crmbot: Research, site: LocalSite
) -> None:
    await crmbot("staff", "add", "Sam")
    csv = crmbot.csv(f"name,email,company,website\nAnn Lee,ann@acme.test,Acme,{site.url('/')}\n")
    assert (await crmbot("research", csv)).returncode == 0

    listed = await crmbot("drafts", "list")
    assert listed.stdout == (
        "#1     pending  outreach outbound-research    Ann Lee <ann@acme.test>  A note for Acme\n"
    )
    assert (await crmbot("drafts", "list", "--status", "approved")).stdout == "no drafts approved\n"
    bad = await crmbot("drafts", "list", "--kind", "memo")
    assert bad.returncode == 2 and bad.stderr == "crmbot: error: --kind is one of reply, outreach\n"

    shown = (await crmbot("drafts", "show", "1")).stdout.splitlines()
    assert shown[0].startswith("draft #1  outreach  pending  by outbound-research  (run ")
    assert shown[1:4] == [
        "to: Ann Lee <ann@acme.test> on email",
        shown[2],  # created: the time it was written
        "why a draft: a first message to a prospect is always reviewed",
    ]
    assert (
        shown[4]
        == f"built from: Researched from website {site.url('/')} (Acme Robotics: bakery robots)"
    )
    assert shown[5] == "subject: A note for Acme"
    assert shown[7].startswith("Hi Ann, I was reading 127.0.0.1, where Acme says: “")
    assert shown[-2:] == [
        f"source: {site.url('/')}",
        "decide: crmbot drafts approve 1 --as NAME (or reject)",
    ]

    stranger = await crmbot("drafts", "reject", "1", "--as", "Zed")
    assert stranger.returncode == 2
    assert stranger.stderr == "crmbot: error: no staff member named 'Zed'\n"
    rejected = await crmbot("drafts", "reject", "1", "--as", "sam")
    assert rejected.stdout == "draft #1 rejected by Sam: nothing is sent\n"
    late = await crmbot("drafts", "approve", "1", "--as", "Sam")
    assert late.returncode == 1 and late.stdout == "draft #1: already rejected by Sam\n"
    missing = await crmbot("drafts", "show", "7")
    assert (
        missing.returncode == 2
        and missing.stderr == "crmbot: error: no draft #7 (crmbot drafts list)\n"
    )

    assert crmbot.files.sql("SELECT count(*) FROM outbox WHERE channel = 'email'") == [(0,)]
    [(actor, payload)] = crmbot.files.sql(
        "SELECT actor, payload FROM audit_events WHERE kind = 'draft_decided'"
    )
    assert actor == "cli:Sam" and json.loads(str(payload))["decision"] == "rejected"


async def test_a_progress_bar_runs_on_a_terminal(crmbot: Research, site: LocalSite) -> None:
    csv = crmbot.csv(f"name,email,website\nAnn,ann@acme.test,{site.url('/')}\n")
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        str(CRMBOT),
        "research",
        csv,
        cwd=crmbot.files.workdir,
        env={**_clean_env(), **crmbot.env, "COLUMNS": "100"},
        stdout=asyncio.subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)

    assert process.returncode == 0
    assert b"researching" in seen and b"1/1" in seen
    assert out.decode().startswith("research: 1 drafted")
