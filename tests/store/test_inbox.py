"""Inbound messages are recorded once, land with the right contact and the one open conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from bot.store.contacts import Identity
from bot.store.conversations import set_state
from bot.store.db import Database
from bot.store.inbox import (
    InboundMessage,
    Recorded,
    conversations_with_pending,
    mark_handled,
    pending_messages,
    record_inbound,
)
from bot.store.models import ChannelIdentity, Contact, Conversation, Message


def inbound(
    external_id: str,
    text: str = "hi",
    *,
    channel: str = "telegram",
    address: str = "100",
    **identity: Any,
) -> InboundMessage:
    return InboundMessage(Identity(channel, address, **identity), external_id, text)


async def record(db: Database, message: InboundMessage) -> Recorded | None:
    async with db.transaction() as session:
        return await record_inbound(session, message)


async def count(db: Database, model: type[Any], *where: Any) -> int:
    async with db.transaction() as session:
        query = select(func.count()).select_from(model).where(*where)
        return int(await session.scalar(query) or 0)


async def test_the_same_external_id_twice_on_one_channel_is_stored_once(db: Database) -> None:
    first = await record(db, inbound("chat1:7", "hello"))
    again = await record(db, inbound("chat1:7", "hello"))

    assert first is not None
    assert again is None
    assert await count(db, Message) == 1


async def test_the_same_external_id_on_another_channel_is_another_message(db: Database) -> None:
    on_telegram = await record(db, inbound("42", channel="telegram", address="ann-tg"))
    by_email = await record(db, inbound("42", channel="email", address="ann@example.com"))

    assert on_telegram is not None and by_email is not None
    assert on_telegram.message.id != by_email.message.id
    assert await count(db, Message) == 2


async def test_a_new_identity_creates_a_contact_and_a_known_one_is_recognized(
    db: Database,
) -> None:
    first = await record(db, inbound("1", address="555", name="Ann", telegram_user_id=555))
    second = await record(db, inbound("2", address="555", name="Ann"))

    assert first is not None and second is not None
    assert second.contact.id == first.contact.id
    assert first.contact.name == "Ann" and first.contact.telegram_user_id == 555
    assert await count(db, Contact) == 1
    async with db.transaction() as session:
        identities = (await session.execute(select(ChannelIdentity))).scalars().all()
    assert [(i.contact_id, i.channel, i.address) for i in identities] == [
        (first.contact.id, "telegram", "555")
    ]


async def test_an_email_identity_finds_the_contact_with_that_email_ignoring_case(
    db: Database,
) -> None:
    async with db.transaction() as session:
        ann = Contact(name="Ann Lee", email="Ann.Lee@Example.COM")
        session.add(ann)

    recorded = await record(
        db,
        inbound(
            "<m1@example.com>",
            channel="email",
            address="ann.lee@example.com",
            email="ann.lee@example.com",
        ),
    )

    assert recorded is not None
    assert recorded.contact.id == ann.id
    assert recorded.contact.name == "Ann Lee"  # what staff set is kept
    assert await count(db, Contact) == 1
    assert await count(db, ChannelIdentity, ChannelIdentity.contact_id == ann.id) == 1


async def test_concurrent_messages_from_a_known_contact_share_one_open_conversation(
    db: Database,
) -> None:
    await record(db, inbound("0", address="7"))
    async with db.transaction() as session:
        await session.execute(Conversation.__table__.delete())  # known contact, no conversation

    results = await asyncio.gather(*(record(db, inbound(f"m{i}", address="7")) for i in range(4)))

    assert all(r is not None for r in results)
    assert len({r.conversation.id for r in results if r is not None}) == 1
    assert await count(db, Conversation, Conversation.state != "closed") == 1
    assert await count(db, Message) == 4


async def test_concurrent_first_messages_from_a_new_contact_are_all_recorded(
    db: Database,
) -> None:
    results = await asyncio.gather(*(record(db, inbound(f"m{i}", address="8")) for i in range(4)))

    assert all(r is not None for r in results)
    assert len({r.contact.id for r in results if r is not None}) == 1
    assert await count(db, Contact) == 1
    assert await count(db, ChannelIdentity) == 1
    assert await count(db, Conversation) == 1
    assert await count(db, Message) == 4


async def test_after_a_conversation_is_closed_the_next_message_opens_a_new_one(
    db: Database,
) -> None:
    first = await record(db, inbound("1"))
    assert first is not None
    async with db.transaction() as session:
        await set_state(session, first.conversation.id, "closed")

    second = await record(db, inbound("2"))

    assert second is not None
    assert second.contact.id == first.contact.id
    assert second.conversation.id != first.conversation.id
    assert await count(db, Conversation, Conversation.state != "closed") == 1


async def test_pending_messages_come_oldest_first_until_marked_handled(db: Database) -> None:
    recorded = [await record(db, inbound(str(i), f"text {i}")) for i in range(3)]
    conversation_id = recorded[0].conversation.id if recorded[0] else 0
    async with db.transaction() as session:
        pending = await pending_messages(session, conversation_id)
        assert [m.text for m in pending] == ["text 0", "text 1", "text 2"]
        assert await conversations_with_pending(session) == [conversation_id]
        await mark_handled(session, [pending[0].id, pending[1].id], "run-1")

    async with db.transaction() as session:
        left = await pending_messages(session, conversation_id)
        handled = await session.get(Message, pending[0].id)
    assert [m.text for m in left] == ["text 2"]
    assert handled is not None and handled.handled_at is not None and handled.run_id == "run-1"

    async with db.transaction() as session:
        await mark_handled(session, [left[0].id], "run-2")
        assert await pending_messages(session, conversation_id) == []
        assert await conversations_with_pending(session) == []
