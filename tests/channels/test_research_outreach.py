"""End to end: `crmbot research` over a CSV against a local website and feed drafts openers and
sends nothing; `crmbot drafts approve` sends exactly one email, from the deal owner's name.

The bot runs with the real email channel (Dovecot, aiosmtpd); the commands run as a person
would run them, in processes of their own, on the same database. Once offline (extractive
openers), once through the openai SDK against the wire stub, with a model that first tries to
send the email itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.store import staff_members
from bot.store.models import AuditEvent, Draft
from tests.providers.stub_server import Reply, StubServer
from tests.providers.wire import API_KEY, OpenAIWire
from tests.support.commands import run_crmbot as crmbot
from tests.support.email_rig import EmailRig
from tests.support.mail_servers import OUR_ADDRESS, Dovecot, MailUser, SmtpSink
from tests.support.telegram_rig import eventually
from tests.support.websites import LocalSite, acme_site

ANN, BOB = "ann@prospect.test", "bob@prospect.test"
WIRE = OpenAIWire()


def prospects(site: LocalSite) -> str:
    return (
        "name,email,company,website,feed,notes,owner\n"
        f"Ann Lee,{ANN},Acme,{site.url('/')},{site.url('/feed.xml')},Met at the Paris fair,Dana\n"
        f"Bob Roe,{BOB},Roe Bakery,{site.url('/private/team')},,,\n"
        f"Cat,cat-at-prospect.test,,{site.url('/')},,,\n"
    )


@asynccontextmanager
async def openai_stub(site: LocalSite) -> AsyncIterator[StubServer]:
    """A model that tries send_message first, then drafts an opener about the Lyon news."""
    stub = StubServer(WIRE.route)
    await stub.start()
    opener = {
        "subject": "Your new Lyon workshop",
        "opener": "Hi Ann, congratulations on opening a second workshop in Lyon: forty ovens "
        "a month is a lot of early mornings saved for bakeries in the south.",
        "sources": [site.url("/news/lyon")],
    }
    stub.queue(
        Reply(body=WIRE.tool_calls(("call_1", "send_message", {"text": "Buy now, Ann!"}))),
        Reply(body=WIRE.tool_calls(("call_2", "draft_opener", opener))),
    )
    try:
        yield stub
    finally:
        await stub.close()


@pytest.mark.parametrize("provider", ["offline", "openai"])
async def test_research_drafts_openers_and_sends_nothing_until_a_person_approves(
    provider: str,
    database_url: str,
    dovecot_server: Dovecot,
    mail_user: MailUser,
    smtp: SmtpSink,
    tmp_path: Path,
) -> None:
    async with acme_site() as site:
        rig = EmailRig(database_url, dovecot_server, mail_user, smtp)
        await rig.start()
        try:
            assert rig.app is not None
            async with rig.app.db.transaction() as session:
                await staff_members.add(session, "Dana")
                await staff_members.add(session, "Sam")
            csv = tmp_path / "prospects.csv"
            csv.write_text(prospects(site))
            env = {"DATABASE_URL": database_url, "RESEARCH_ALLOW_PRIVATE": "true"}
            if provider == "openai":
                async with openai_stub(site) as stub:
                    env |= {
                        "LLM_PROVIDER": "openai",
                        "OPENAI_API_KEY": API_KEY,
                        "OPENAI_BASE_URL": f"{stub.base_url}/v1",
                    }
                    researched = await crmbot(tmp_path, "research", str(csv), **env)
                    stub.assert_complete()
                    assert [r.body["tools"][0]["function"]["name"] for r in stub.received] == [
                        "draft_opener",
                        "draft_opener",
                    ]
                    assert all(len(r.body["tools"]) == 1 for r in stub.received)
                    told = stub.received[1].body["messages"][-1]
                    assert told["role"] == "tool" and "only drafts" in told["content"]
            else:
                researched = await crmbot(tmp_path, "research", str(csv), **env)

            assert researched.returncode == 0, researched.stderr
            assert sorted(researched.stdout.splitlines()) == [
                "research: 1 drafted, 0 drafted before, 2 failed; review them: "
                "crmbot drafts list --status pending",
                f"row 3: nothing fetched to ground an opener (website: robots.txt of "
                f"{site.base_url} disallows /private/team)",
                "row 4: bad email 'cat-at-prospect.test'",
            ]
            assert site.requested("/private/team") == 0

            # Drafted, shown to staff, and not sent.
            [draft] = await rig.rows(Draft)
            assert draft.status == "pending" and draft.kind == "outreach"
            assert site.url("/news/lyon") in draft.sources
            await eventually(lambda: any(f"Draft #{draft.id}" in t for _, t in rig.staff.delivered))
            await asyncio.sleep(0.5)  # the outbox worker polls every 50 ms: give it the chance
            assert await rig.outbox() == [] and smtp.received == []

            # Running the file again drafts nothing twice.
            again = await crmbot(tmp_path, "research", str(csv), **env)
            assert "research: 0 drafted, 1 drafted before, 2 failed" in again.stdout
            assert len(await rig.rows(Draft)) == 1

            # A person approves: exactly one email, from the owner's name, with the subject.
            approved = await crmbot(
                tmp_path, "drafts", "approve", str(draft.id), "--as", "sam", **env
            )
            assert approved.returncode == 0, approved.stderr
            assert approved.stdout == f"draft #{draft.id} approved by Sam: queued to be sent\n"
            [mail] = await eventually(lambda: smtp.to(ANN))
            assert mail.message["From"] == f"Dana <{OUR_ADDRESS}>"
            assert mail.message["To"] == f"Ann Lee <{ANN}>"
            assert mail.message["Subject"] == draft.subject
            assert mail.message["Auto-Submitted"] is None  # a person's email, not the bot's
            assert mail.message["In-Reply-To"] is None
            assert draft.text in mail.body()

            twice = await crmbot(
                tmp_path, "drafts", "approve", str(draft.id), "--as", "Dana", **env
            )
            assert twice.returncode == 1
            assert twice.stdout == f"draft #{draft.id}: already approved by Sam\n"
            await asyncio.sleep(0.3)
            assert len(smtp.received) == 1
            [item] = await rig.outbox()
            assert item.author == "staff" and item.status == "sent"
            [decided] = await rig.rows(AuditEvent, AuditEvent.kind == "draft_decided")
            assert decided.actor == "cli:Sam" and decided.payload["decision"] == "approved"
        finally:
            await rig.stop()
