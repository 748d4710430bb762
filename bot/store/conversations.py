"""Conversations: opening them and their state."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import NotFoundError
from bot.store.models import Conversation
from bot.store.types import utcnow

STATES = ("bot", "handed_off", "closed")


async def find_open(session: AsyncSession, contact_id: int, channel: str) -> Conversation | None:
    query = select(Conversation).where(
        Conversation.contact_id == contact_id,
        Conversation.channel == channel,
        Conversation.state != "closed",
    )
    return (await session.execute(query)).scalar_one_or_none()


async def open_conversation(
    session: AsyncSession, contact_id: int, channel: str, subject: str | None = None
) -> Conversation:
    """The contact's open conversation on `channel`, started if there is none."""
    found = await find_open(session, contact_id, channel)
    if found is not None:
        return found
    conversation = Conversation(contact_id=contact_id, channel=channel, subject=subject)
    try:
        async with session.begin_nested():
            session.add(conversation)
    except IntegrityError:
        # A concurrent worker opened it first; the partial unique index guarantees one.
        found = await find_open(session, contact_id, channel)
        if found is None:
            raise
        return found
    return conversation


async def get_conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFoundError(f"no conversation with id {conversation_id}")
    return conversation


async def set_state(session: AsyncSession, conversation_id: int, state: str) -> None:
    if state not in STATES:
        raise ValueError(f"unknown conversation state {state!r}")
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(state=state, updated_at=utcnow())
    )


async def find_conversation(session: AsyncSession, conversation_id: int) -> Conversation | None:
    """The conversation with this id, or None (`get_conversation` raises instead)."""
    return await session.get(Conversation, conversation_id)


async def remember_agent(session: AsyncSession, conversation_id: int, agent_name: str) -> None:
    """Make `agent_name` the conversation's sticky choice for its next runs."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(current_agent=agent_name)
    )
