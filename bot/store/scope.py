"""What one agent run may read and change: its own contact, conversation and their deals.

Tools get a `ConversationScope`, never a session. Every method is bound to the run's contact
and conversation, so a model that names another contact's id, deal or message cannot reach
it through a tool: the narrowest way to enforce contact scoping is to offer nothing wider.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store import availability, deals, kb, outbox, scores
from bot.store.audit import AuditLog
from bot.store.contacts import address_on, get_contact
from bot.store.inbox import recent_messages
from bot.store.kb_vectors import VectorIndex, hybrid_search
from bot.store.meetings import ContactMeetings
from bot.store.models import (
    Contact,
    Conversation,
    Deal,
    Meeting,
    Message,
    PendingConfirmation,
    ScoreChange,
)


class ConversationScope:
    def __init__(self, session: AsyncSession, *, contact_id: int, conversation_id: int) -> None:
        self._session = session
        self.contact_id, self.conversation_id = contact_id, conversation_id

    async def contact(self) -> Contact:
        return await get_contact(self._session, self.contact_id)

    @property
    def meetings(self) -> ContactMeetings:
        """This contact's meetings: the upcoming one, booking, moving, their invites."""
        return ContactMeetings(
            self._session, contact_id=self.contact_id, conversation_id=self.conversation_id
        )

    async def address(self, channel: str) -> str | None:
        """The contact's address on `channel`, or None when they have none there."""
        return await address_on(self._session, self.contact_id, channel)

    async def recent_messages(self, limit: int) -> list[Message]:
        return await recent_messages(self._session, self.conversation_id, limit)

    async def contact_texts(self) -> list[str]:
        """Everything the contact wrote in this conversation (not staff, not the agent)."""
        query = select(Message.text).where(
            Message.conversation_id == self.conversation_id,
            Message.direction == "in",
            Message.author == "contact",
        )
        return list((await self._session.execute(query)).scalars())

    async def record_answer(self, key: str, answer: str) -> dict[str, Any]:
        """Save one answer among the contact's custom fields; returns them all."""
        contact = await self.contact()
        contact.custom_fields = {**(contact.custom_fields or {}), key: answer}
        return dict(contact.custom_fields)

    async def record_score(
        self, score: int, reasons: Sequence[str], run_id: str | None
    ) -> ScoreChange | None:
        """Keep the contact's computed score; the change with its reasons, or None."""
        return await scores.record_score(
            self._session, await self.contact(), score, reasons, run_id=run_id
        )

    async def latest_score_change(self) -> ScoreChange | None:
        return await scores.latest_change(self._session, self.contact_id)

    async def add_tag(self, tag: str) -> bool:
        """Tag the contact; False when it already had the tag."""
        contact = await self.contact()
        if tag in (contact.tags or []):
            return False
        contact.tags = [*(contact.tags or []), tag]
        return True

    async def owner_hours(self, owner: str) -> str | None:
        """The owner's own working hours, if they are a staff member who set some."""
        return await availability.hours_of(self._session, owner)

    async def booked_spans(
        self, owner: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, datetime]]:
        """When the owner is busy: the times of their booked meetings, and nothing else about
        them (they may be with other contacts)."""
        return await availability.booked_spans(self._session, owner, since, until)

    async def book_slot(self, deal: Deal | None, **fields: Any) -> Meeting | None:
        """Book a meeting with this contact; None when the owner's slot was just taken."""
        if deal is not None and deal.contact_id != self.contact_id:
            raise PermissionError(f"deal {deal.id} is not contact {self.contact_id}'s")
        return await availability.book_slot(
            self._session, deal, contact_id=self.contact_id, **fields
        )

    async def open_deal(self) -> Deal | None:
        return await deals.open_deal(self._session, self.contact_id)

    async def deal(self, deal_id: int) -> Deal | None:
        """The deal, if it exists and is this contact's; None for anyone else's."""
        deal = await deals.get_deal(self._session, deal_id)
        return deal if deal is not None and deal.contact_id == self.contact_id else None

    async def start_deal(self) -> Deal:
        return await deals.start_deal(self._session, await self.contact())

    async def move_stage(self, deal: Deal, stage: str) -> str:
        if deal.contact_id != self.contact_id:
            raise PermissionError(f"deal {deal.id} is not contact {self.contact_id}'s")
        return await deals.move_stage(self._session, deal, stage)

    async def book_meeting(self, deal: Deal | None, **fields: Any) -> Meeting:
        return await deals.book_meeting(self._session, deal, contact_id=self.contact_id, **fields)

    async def ask_confirmation(
        self, *, key: str, run_id: str, action: str, arguments: dict[str, Any]
    ) -> PendingConfirmation:
        return await deals.ask_confirmation(
            self._session,
            key=key,
            run_id=run_id,
            conversation_id=self.conversation_id,
            action=action,
            arguments=arguments,
        )

    async def queue_message(
        self,
        *,
        key: str,
        channel: str,
        recipient: str,
        text: str,
        run_id: str,
        automatic: bool = False,
    ) -> int:
        """Put an agent's message to the contact in the outbox; returns the item id."""
        item, _ = await outbox.enqueue(
            self._session,
            key=key,
            conversation_id=self.conversation_id,
            contact_id=self.contact_id,
            channel=channel,
            recipient=recipient,
            text=text,
            author="agent",
            run_id=run_id,
            automatic=automatic,
        )
        return item.id

    async def search_kb(
        self,
        query: str,
        limit: int,
        near: tuple[VectorIndex, Sequence[float]] | None = None,
    ) -> list[kb.Hit]:
        """The knowledge base's best passages for `query` (the same for every contact); with
        `near` (the process's vectors and the question's embedding), keyword and semantic
        rankings fused."""
        return await hybrid_search(self._session, query, limit, near)

    async def set_category(
        self, category: str, audit: AuditLog, *, actor: str, run_id: str | None = None
    ) -> str | None:
        """Tag this conversation with `category`, audited; returns the category it had."""
        conversation = await self._session.get(Conversation, self.conversation_id)
        if conversation is None:
            raise LookupError(f"no conversation {self.conversation_id}")
        previous, conversation.category = conversation.category, category
        await audit.append(
            self._session,
            "conversation_tagged",
            {"category": category, "previous": previous},
            actor=actor,
            run_id=run_id,
            conversation_id=self.conversation_id,
        )
        return previous
