"""What one agent run may read and change: its own contact, conversation and their deals.

Tools get a `ConversationScope`, never a session. Every method is bound to the run's contact
and conversation, so a model that names another contact's id, deal or message cannot reach
it through a tool: the narrowest way to enforce contact scoping is to offer nothing wider.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store import deals, outbox
from bot.store.contacts import address_on, get_contact
from bot.store.inbox import recent_messages
from bot.store.models import Contact, Deal, Meeting, Message, PendingConfirmation


class ConversationScope:
    def __init__(self, session: AsyncSession, *, contact_id: int, conversation_id: int) -> None:
        self._session = session
        self.contact_id, self.conversation_id = contact_id, conversation_id

    async def contact(self) -> Contact:
        return await get_contact(self._session, self.contact_id)

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
