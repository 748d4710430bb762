"""A batch of inbound messages is stored exactly as recording them one by one stores it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, select

from bot.store.contacts import Identity
from bot.store.db import Database
from bot.store.inbox import InboundMessage, Stored, record_inbound, record_inbound_batch
from bot.store.models import Base, ChannelIdentity, Contact, Conversation, Message


def tg(external_id: str, chat: int, text: str = "hi", **identity: Any) -> InboundMessage:
    """A Telegram private message; the chat id is the address and the user id."""
    return InboundMessage(
        Identity("telegram", str(chat), telegram_user_id=chat, **identity), external_id, text
    )


def email(
    external_id: str, address: str, text: str, subject: str, **identity: Any
) -> InboundMessage:
    return InboundMessage(
        Identity("email", address, email=address, **identity), external_id, text, subject=subject
    )


def console(external_id: str, name: str, text: str, **identity: Any) -> InboundMessage:
    return InboundMessage(Identity("console", name, name=name, **identity), external_id, text)


MIXED = [
    tg("100:1", 100, "hi", name="Ann", telegram_username="ann", lead_source="ad-7"),  # new
    tg("200:2", 200, "me again", name="Bob", telegram_username="bobby"),  # known, new username
    tg("100:2", 100, "are you there?", name="Ann", telegram_username="ann"),  # same new person
    email("<c1@example.com>", "carol@example.com", "pricing?", "Pricing", name="Carol"),
    tg("100:1", 100, "hi (delivered twice)", name="Ann"),  # a duplicate within the batch
    tg("200:1", 200, "earlier (delivered again)", name="Bob"),  # a duplicate of a stored one
    tg("300:2", 300, "back again", name="Dan"),  # his conversation was closed
    tg("400:2", 400, "my number", name="Eve", phone="+44 20 7946 0000", telegram_username="eve"),
    email("<z1@example.com>", "zed@example.com", "hello", "Hello", name="Zed"),  # new, by email
    console("zed-1", "zed", "hi from the console", email="ZED@example.com"),  # Zed, by email
    email("<z2@example.com>", "zed@example.com", "and another", "Re: Hello"),
    tg("500:1", 500, "(opened the chat)"),  # no name yet: named after the chat
    tg("500:2", 500, "it's Max", name="Max"),  # the name replaces the chat id
]


async def seed(db: Database) -> None:
    """Bob, Dan and Eve have written before, Carol was entered by staff."""
    async with db.transaction() as session:
        await record_inbound(session, tg("200:1", 200, "earlier", name="Bob"))
        session.add(Contact(name="Carol (staff)", email="Carol@Example.com"))
        dan = await record_inbound(session, tg("300:1", 300, "bye", name="Dan"))
        assert dan is not None
        dan.conversation.state = "closed"
        eve = await record_inbound(session, tg("400:1", 400, "hello"))  # named "400"
        assert eve is not None
        eve.contact.phone = "+1 555 0100"  # typed in by staff, kept


async def empty(db: Database) -> None:
    """Remove what recording created: the database is as fresh as a new one, ids aside."""
    async with db.transaction() as session:
        for model in (Message, Conversation, ChannelIdentity, Contact):
            await session.execute(delete(model))


def _plain(value: Any) -> Any:
    return value is not None if isinstance(value, datetime) else value  # times differ, set or not


async def snapshot(db: Database, stored: list[tuple[str, int]]) -> dict[str, Any]:
    """Every row recording touches, with ids replaced by what they point at.

    `stored` is (external id, conversation id) per message the call reported as new.
    """
    async with db.transaction() as session:
        contacts = {c.id: c.name for c in await session.scalars(select(Contact))}
        conversations = {
            c.id: (contacts[c.contact_id], c.channel, c.state)
            for c in await session.scalars(select(Conversation))
        }
        refs = {"contact_id": contacts, "conversation_id": conversations}

        async def rows(model: type[Base], order: Any = None) -> list[tuple[Any, ...]]:
            found = await session.scalars(select(model).order_by(order))
            columns = [c.name for c in model.__table__.columns if c.name != "id"]
            values = [
                tuple(
                    refs[n][getattr(row, n)] if n in refs else _plain(getattr(row, n))
                    for n in columns
                )
                for row in found
            ]
            return values if order is not None else sorted(values, key=repr)

        return {
            "contacts": await rows(Contact),
            "identities": await rows(ChannelIdentity),
            "conversations": await rows(Conversation),
            "messages": await rows(Message, Message.id),  # in id order: input order
            "reported": [(external_id, conversations[c]) for external_id, c in stored],
        }


async def one_by_one(db: Database, inbounds: list[InboundMessage]) -> list[tuple[str, int]]:
    async with db.transaction() as session:
        recorded = [await record_inbound(session, inbound) for inbound in inbounds]
    return [(r.message.external_id or "", r.conversation.id) for r in recorded if r is not None]


async def batch(db: Database, inbounds: list[InboundMessage]) -> list[Stored]:
    async with db.transaction() as session:
        return await record_inbound_batch(session, inbounds)


async def count(db: Database, model: type[Base], *where: Any) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_batch_stores_exactly_what_recording_one_by_one_stores(db: Database) -> None:
    await seed(db)
    expected = await snapshot(db, await one_by_one(db, MIXED))
    await empty(db)
    await seed(db)

    stored = await batch(db, MIXED)

    got = await snapshot(db, [(s.inbound.external_id, s.conversation_id) for s in stored])
    assert got == expected
    assert len(got["messages"]) == 3 + 11  # the seed's, and the batch's but two duplicates


async def test_duplicates_within_a_batch_are_stored_once_and_reported_once(db: Database) -> None:
    stored = await batch(db, [tg("1:1", 1, "first"), tg("1:1", 1, "again"), tg("1:2", 1, "next")])

    assert [s.inbound.text for s in stored] == ["first", "next"]
    async with db.transaction() as session:
        texts = list(await session.scalars(select(Message.text).order_by(Message.id)))
    assert texts == ["first", "next"]


async def test_a_new_person_writing_several_times_gets_one_contact_and_conversation(
    db: Database,
) -> None:
    stored = await batch(db, [tg(f"7:{n}", 7, f"m{n}", name="Ann") for n in range(3)])

    assert len({(s.contact_id, s.conversation_id) for s in stored}) == 1
    assert await count(db, Contact) == 1
    assert await count(db, ChannelIdentity) == 1
    assert await count(db, Conversation) == 1


async def test_message_ids_follow_the_order_of_the_batch_across_conversations(
    db: Database,
) -> None:
    await batch(db, [tg("2:0", 2)])  # one known contact among new ones
    inbounds = [tg("1:1", 1), tg("2:1", 2), tg("1:2", 1), tg("3:1", 3), tg("2:2", 2)]

    stored = await batch(db, inbounds)

    assert [s.inbound for s in stored] == inbounds
    assert [s.message_id for s in stored] == sorted(s.message_id for s in stored)
    async with db.transaction() as session:
        ids = list(await session.scalars(select(Message.external_id).order_by(Message.id)))
    assert ids == ["2:0", "1:1", "2:1", "1:2", "3:1", "2:2"]


async def test_a_batch_already_stored_records_nothing(db: Database) -> None:
    inbounds = [tg("1:1", 1), tg("2:1", 2)]
    await batch(db, inbounds)

    assert await batch(db, inbounds) == []
    assert await count(db, Message) == 2


async def test_a_batch_takes_the_same_few_statements_whatever_its_size(db: Database) -> None:
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", counted)
    try:
        per_batch = []
        for size in (2, 50):
            people = range(size * 100, size * 100 + size)
            for round_ in ("new", "known"):  # first sightings, then updates of known people
                statements.clear()
                await batch(db, [tg(f"{p}:{round_}", p, telegram_username=round_) for p in people])
                per_batch.append(len(statements))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", counted)

    assert per_batch[:2] == per_batch[2:]
    assert max(per_batch) <= 12


async def test_concurrent_batches_with_the_same_new_people_give_one_contact_each(
    db: Database,
) -> None:
    """On PostgreSQL the later batch hits unique constraints and is redone; SQLite serializes."""
    for round_ in range(3):
        people = range(1000 + round_ * 10, 1000 + round_ * 10 + 9)
        first = [tg(f"{p}:a", p, name=f"P{p}") for p in people[:6]] + [
            console(f"{round_}:a", f"c{round_}", "hi")
        ]
        second = [tg(f"{p}:b", p, name=f"P{p}") for p in reversed(people[3:])] + [
            console(f"{round_}:b", f"c{round_}", "hi"),
            first[4],  # the same message, delivered to both
        ]

        stored = await asyncio.gather(batch(db, first), batch(db, second))

        reported = sorted(s.inbound.external_id for s in stored[0] + stored[1])
        assert reported == sorted({i.external_id for i in first + second})
    assert await count(db, Contact) == 3 * 10
    assert await count(db, ChannelIdentity) == 3 * 10
    assert await count(db, Conversation, Conversation.state != "closed") == 3 * 10
    assert await count(db, Message) == 3 * (7 + 7)


async def test_concurrent_batches_for_a_known_person_share_one_new_conversation(
    db: Database,
) -> None:
    await asyncio.gather(batch(db, [tg("5:0", 5)]), batch(db, [tg("6:0", 6)]))  # two connections
    async with db.transaction() as session:
        await session.execute(delete(Conversation))  # known people, no conversation open

    stored = await asyncio.gather(*(batch(db, [tg(f"5:{n}", 5), tg(f"6:{n}", 6)]) for n in (1, 2)))

    assert len({s.conversation_id for s in stored[0] + stored[1]}) == 2
    assert await count(db, Conversation) == 2
    assert await count(db, Message) == 4
