"""Sending an approved outbound opener: by email, under the deal owner's name, as staff.

The opener goes through the outbox like any other message (one idempotency key per draft), in
the prospect's email conversation, opened if there is none. Its outbox meta carries what the
email channel puts on a first email: `from_name` (the From display name: the owner of the
prospect's open deal, else the contact's owner, else the staff member who approved it),
`to_name` and `subject` (used as written when the email starts a thread; in a thread the
prospect already has, the thread's subject is kept).

It is a person's message, not the agent's (`author="staff"`): no Auto-Submitted header, no
automatic-reply cap, and the conversation is handed to people, so a prospect who answers is
answered by the salesperson, not by an agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.store import outbox
from bot.store.contacts import address_on, get_contact
from bot.store.conversations import open_conversation
from bot.store.db import Tx
from bot.store.deals import open_deal
from bot.store.models import Draft

if TYPE_CHECKING:
    from bot.desk.staff import StaffMember

EMAIL = "email"


async def send_outreach(session: Tx, draft: Draft, text: str, staff: StaffMember) -> str:
    """Queue the opener to the prospect's email address; returns "sent" or why not."""
    contact = await get_contact(session, draft.contact_id)
    address = await address_on(session, contact.id, EMAIL) or contact.email
    if not address:
        return "the prospect has no email address"
    if contact.opted_out_at is not None:
        return "the prospect opted out of messages"
    subject = " ".join((draft.subject or "").split())
    conversation = await open_conversation(session, contact.id, EMAIL, subject=subject or None)
    draft.conversation_id = conversation.id  # its decision is audited in that thread
    if conversation.state == "bot":
        conversation.state = "handed_off"  # the salesperson wrote first: their answer to give
    deal = await open_deal(session, contact.id)
    sender = (deal.owner if deal else None) or contact.owner or staff.name
    await outbox.enqueue(
        session,
        key=f"draft:{draft.id}:send",
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel=EMAIL,
        recipient=address,
        text=text,
        author="staff",
        run_id=draft.run_id,
        meta={
            "draft_id": draft.id,
            "staff": staff.actor,
            "staff_name": staff.name,
            "from_name": sender,
            "to_name": contact.name,
            "subject": subject,
        },
    )
    return "sent"
