"""A backed-up channel (the staff group's 20 posts a minute): new handoffs' summaries go
first, and a customer's further lines join their copy that still waits."""

from __future__ import annotations

from datetime import timedelta

from bot.store import outbox
from bot.store.db import Database
from bot.store.models import OutboxItem
from bot.store.types import utcnow
from tests.support.outbox import Chat, item_by_key, new_chat

STAFF = "staff"


async def post(db: Database, chat: Chat, key: str, kind: str, text: str, **meta: object) -> int:
    async with db.transaction() as session:
        item, _ = await outbox.enqueue(
            session,
            key=key,
            conversation_id=chat.conversation_id,
            contact_id=chat.contact_id,
            channel=STAFF,
            recipient=f"contact:{chat.contact_id}",
            text=text,
            author="system",
            meta={"kind": kind, **meta},
            to_contact=False,
        )
        return item.id


async def heads(db: Database, *kinds: str) -> list[str]:
    async with db.reading() as session:
        due = await outbox.due_heads(session, STAFF, first_kinds=kinds)
    return [item.idempotency_key for item in due]


async def join(db: Database, chat: Chat, text: str, *, backed_up: bool = True) -> bool:
    """Join `text` to a waiting copy; `backed_up`: any post queued until now has waited long
    enough (else only one queued a minute ago would have)."""
    queued_before = utcnow() + timedelta(seconds=1 if backed_up else -60)
    async with db.transaction() as session:
        return await outbox.join_waiting(
            session,
            channel=STAFF,
            conversation_id=chat.conversation_id,
            text=text,
            queued_before=queued_before,
            longest=100,
            meta={"kind": "copy", "joinable": True, "joined": True},
        )


async def test_summaries_go_before_other_conversations_waiting_posts(db: Database) -> None:
    ann, bob = await new_chat(db, "Ann"), await new_chat(db, "Bob")
    await post(db, ann, "ann:copy", "copy", "💬 still there?")
    await post(db, bob, "bob:summary", "summary", "Bob was handed off")
    await post(db, ann, "ann:summary", "summary", "Ann, again")  # behind Ann's copy
    assert await heads(db) == ["ann:copy", "bob:summary"]
    assert await heads(db, "summary") == ["bob:summary", "ann:copy"]


async def test_a_waiting_copy_takes_the_next_line_and_keeps_the_order(db: Database) -> None:
    ann = await new_chat(db)
    await post(db, ann, "ann:1", "copy", "💬 one", joinable=True, copy_from_chat=5)
    assert await join(db, ann, "💬 two")
    assert await join(db, ann, "💬 three")
    item = await item_by_key(db, "ann:1")
    assert item.text == "💬 one\n💬 two\n💬 three"
    assert "copy_from_chat" not in item.meta  # shown as our text now, not copied
    assert await join(db, ann, "💬 " + "x" * 100) is False  # past the longest post


async def test_only_a_waiting_joinable_copy_at_the_end_of_the_queue_is_joined(
    db: Database,
) -> None:
    ann = await new_chat(db)
    await post(db, ann, "ann:1", "copy", "💬 one", joinable=True)
    assert await join(db, ann, "💬 two", backed_up=False) is False  # not backed up: goes on its own
    await post(db, ann, "ann:photo", "copy", "💬 (attachment)")
    assert await join(db, ann, "💬 three") is False  # the last post is no joinable copy
    async with db.transaction() as session:
        await outbox.claim(session, (await item_by_key(db, "ann:1")).id, "w", claim_seconds=60)
    bob = await new_chat(db, "Bob")
    await post(db, bob, "bob:1", "copy", "💬 hi", joinable=True)
    async with db.transaction() as session:
        await outbox.claim(session, (await item_by_key(db, "bob:1")).id, "w", claim_seconds=60)
    assert await join(db, bob, "💬 again") is False  # in flight: the line gets a post
    assert (await item_by_key(db, "bob:1")).text == "💬 hi"


async def test_a_joined_line_counts_once_in_the_queue(db: Database) -> None:
    ann = await new_chat(db)
    await post(db, ann, "ann:1", "copy", "💬 one", joinable=True)
    await join(db, ann, "💬 two")
    async with db.reading() as session:
        rows = (await session.execute(OutboxItem.__table__.select())).all()
    assert len(rows) == 1
