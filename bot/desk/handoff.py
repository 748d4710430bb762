"""Passing a conversation to people: the state change, the record, the word to the customer."""

from __future__ import annotations

from bot.core.hours import BusinessHours
from bot.desk.staff import notify_staff, summary_text
from bot.store import outbox
from bot.store.audit import AuditLog
from bot.store.contacts import address_on
from bot.store.conversations import get_conversation
from bot.store.db import Tx
from bot.store.handoffs import record_handoff
from bot.store.models import HandoffRecord
from bot.store.types import utcnow

CUSTOMER_NOTICE = (
    "Thanks for your patience. I've passed this conversation to a colleague, "
    "who will reply here as soon as possible."
)
AFTER_HOURS_NOTICE = (
    "Thanks for your patience. I've passed this conversation to a colleague. Our team is away "
    "right now; someone will reply here from {opening}."
)


def customer_notice(hours: BusinessHours | None) -> str:
    """What the customer is told at handoff: when a person will answer."""
    now = utcnow()
    if hours is None or hours.is_open(now):
        return CUSTOMER_NOTICE
    return AFTER_HOURS_NOTICE.format(opening=hours.describe_next_opening(now))


async def hand_off(
    session: Tx,
    audit: AuditLog,
    *,
    conversation_id: int,
    reason: str,
    summary: str = "",
    run_id: str | None = None,
    actor: str,
    tell_customer: bool = True,
    hours: BusinessHours | None = None,
) -> HandoffRecord | None:
    """Move the conversation to `handed_off`, record why, tell staff and the customer once.

    Returns the handoff, or None when the conversation was already with people.
    """
    conversation = await get_conversation(session, conversation_id)
    if conversation.state == "handed_off":
        return None
    conversation.state = "handed_off"
    handoff = await record_handoff(
        session, conversation_id=conversation_id, run_id=run_id, reason=reason, summary=summary
    )
    if tell_customer:
        recipient = await address_on(session, conversation.contact_id, conversation.channel)
        if recipient is not None:
            await outbox.enqueue(
                session,
                key=f"handoff:{handoff.id}:notice",
                conversation_id=conversation_id,
                contact_id=conversation.contact_id,
                channel=conversation.channel,
                recipient=recipient,
                text=customer_notice(hours),
                author="system",
                run_id=run_id,
            )
    await notify_staff(
        session,
        key=f"handoff:{handoff.id}:summary",
        conversation_id=conversation_id,
        contact_id=conversation.contact_id,
        kind="summary",
        text=await summary_text(session, conversation_id, reason, summary),
    )
    handoff.notified_at = utcnow()
    await audit.append(
        session,
        "handoff",
        {"reason": reason, "summary": summary, "handoff_id": handoff.id},
        actor=actor,
        run_id=run_id,
        conversation_id=conversation_id,
    )
    return handoff
