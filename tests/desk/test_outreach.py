"""Sending an approved opener: to the prospect's email, under the deal owner's name, as staff,
and not at all to someone who opted out."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.desk.drafts import DraftNotSent, decide_draft, edit_draft
from bot.desk.staff import StaffMember
from bot.store import drafts
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.deals import start_deal
from bot.store.leads import LeadFields, upsert_lead
from bot.store.models import Conversation, Draft, OutboxItem
from bot.store.types import utcnow

SAM = StaffMember("cli:Sam", "Sam")


async def drafted(db: Database, *, deal_owner: str | None) -> Draft:
    async with db.transaction() as session:
        lead = LeadFields(name="Ann Lee", email="ann@prospect.test", owner="Contact Owner")
        contact, _ = await upsert_lead(session, lead)
        if deal_owner is not None:
            deal = await start_deal(session, contact)
            deal.owner = deal_owner
        draft, _ = await drafts.add_draft(
            session,
            key="research:outbound-research:ann",
            kind="outreach",
            agent="outbound-research",
            contact_id=contact.id,
            channel="email",
            text="Hi Ann, congratulations on the Lyon workshop.",
            reason="outreach",
            subject="Your Lyon  workshop",
            sources=["https://acme.example/news/lyon"],
        )
        return draft


async def email_items(db: Database) -> list[OutboxItem]:
    async with db.reading() as session:
        query = select(OutboxItem).where(OutboxItem.channel == "email")
        return list((await session.execute(query)).scalars())


@pytest.mark.parametrize(("deal_owner", "sender"), [("Dana", "Dana"), (None, "Contact Owner")])
async def test_an_approved_opener_is_one_staff_email_under_the_owner_s_name(
    db: Database, deal_owner: str | None, sender: str
) -> None:
    draft = await drafted(db, deal_owner=deal_owner)

    async with db.transaction() as session:
        outcome = await decide_draft(
            session, AuditLog(), draft_id=draft.id, approve=True, staff=SAM
        )

    assert outcome == "approved"
    [item] = await email_items(db)
    assert (item.recipient, item.author, item.text) == ("ann@prospect.test", "staff", draft.text)
    assert item.meta["from_name"] == sender and item.meta["to_name"] == "Ann Lee"
    assert item.meta["subject"] == "Your Lyon workshop" and item.meta["staff_name"] == "Sam"
    async with db.reading() as session:
        [conversation] = (await session.execute(select(Conversation))).scalars()
    assert (conversation.id, conversation.channel, conversation.state) == (
        item.conversation_id,
        "email",
        "handed_off",  # the prospect's answer goes to the salesperson, not to an agent
    )


async def test_an_edited_opener_sends_the_staff_member_s_text(db: Database) -> None:
    draft = await drafted(db, deal_owner="Dana")

    async with db.transaction() as session:
        outcome = await edit_draft(
            session, AuditLog(), draft_id=draft.id, text="Hi Ann, Lyon looks great!", staff=SAM
        )

    assert outcome == "edited"
    [item] = await email_items(db)
    assert item.text == "Hi Ann, Lyon looks great!" and item.meta["from_name"] == "Dana"


async def test_an_opener_to_someone_who_opted_out_is_not_sent_and_stays_pending(
    db: Database,
) -> None:
    draft = await drafted(db, deal_owner="Dana")
    async with db.transaction() as session:
        contact, _ = await upsert_lead(session, LeadFields(email="ann@prospect.test"))
        contact.opted_out_at = utcnow()

    with pytest.raises(DraftNotSent, match="opted out"):
        async with db.transaction() as session:
            await decide_draft(session, AuditLog(), draft_id=draft.id, approve=True, staff=SAM)

    assert await email_items(db) == []
    async with db.reading() as session:
        again = await drafts.get_draft(session, draft.id)
    assert again is not None and again.status == "pending"
