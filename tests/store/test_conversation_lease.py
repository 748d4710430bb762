"""A conversation's lease gives one worker, in any process, the right to run it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from bot.store.conversations import get_conversation, release_lease, try_lease
from bot.store.db import Database
from bot.store.models import Contact, Conversation
from bot.store.types import utcnow


@pytest.fixture
async def conversation_id(db: Database) -> int:
    async with db.transaction() as session:
        contact = Contact(name="Ann")
        session.add(contact)
        await session.flush()
        conversation = Conversation(contact_id=contact.id, channel="telegram")
        session.add(conversation)
        await session.flush()
        return conversation.id


async def lease(db: Database, conversation_id: int, owner: str, seconds: float = 60) -> bool:
    async with db.transaction() as session:
        return await try_lease(session, conversation_id, owner, seconds)


async def release(db: Database, conversation_id: int, owner: str) -> None:
    async with db.transaction() as session:
        await release_lease(session, conversation_id, owner)


async def lease_state(db: Database, conversation_id: int) -> tuple[str | None, datetime | None]:
    async with db.transaction() as session:
        conversation = await get_conversation(session, conversation_id)
        return conversation.lease_owner, conversation.lease_until


async def test_a_lease_held_by_one_worker_is_refused_to_another(
    db: Database, conversation_id: int
) -> None:
    assert await lease(db, conversation_id, "worker-a")
    assert not await lease(db, conversation_id, "worker-b")
    assert (await lease_state(db, conversation_id))[0] == "worker-a"


async def test_an_expired_lease_can_be_taken_over(db: Database, conversation_id: int) -> None:
    assert await lease(db, conversation_id, "worker-a")
    async with db.transaction() as session:  # worker-a died and its lease ran out
        await session.execute(
            update(Conversation).values(lease_until=utcnow() - timedelta(seconds=1))
        )

    assert await lease(db, conversation_id, "worker-b")
    assert (await lease_state(db, conversation_id))[0] == "worker-b"
    assert not await lease(db, conversation_id, "worker-a")


async def test_the_owner_can_extend_its_lease(db: Database, conversation_id: int) -> None:
    assert await lease(db, conversation_id, "worker-a", seconds=10)
    _, first_until = await lease_state(db, conversation_id)

    assert await lease(db, conversation_id, "worker-a", seconds=600)

    owner, until = await lease_state(db, conversation_id)
    assert owner == "worker-a"
    assert first_until is not None and until is not None
    assert until - first_until > timedelta(seconds=500)


async def test_only_the_owner_can_release_the_lease(db: Database, conversation_id: int) -> None:
    assert await lease(db, conversation_id, "worker-a")

    await release(db, conversation_id, "worker-b")
    assert not await lease(db, conversation_id, "worker-b")

    await release(db, conversation_id, "worker-a")
    assert await lease_state(db, conversation_id) == (None, None)
    assert await lease(db, conversation_id, "worker-b")
