"""Where staff talk about a contact: its forum topic in the staff group, and our posts there.

A topic is remembered per contact (`StaffThread`), so every handoff of that contact lands in
the same place; each post we make about a contact is remembered (`StaffPost`), so a reply to
it routes back to that contact in a group without topics.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from bot.store.db import Tx
from bot.store.models import Contact, StaffPost, StaffThread


async def topic_of(session: Tx, contact_id: int) -> StaffThread | None:
    """The contact's staff topic as remembered, in whichever group it was created."""
    return await session.get(StaffThread, contact_id)


async def remember_topic(session: Tx, contact_id: int, chat_id: int, thread_id: int | None) -> None:
    """Make `thread_id` of `chat_id` the contact's staff topic, replacing any earlier one."""
    await session.merge(StaffThread(contact_id=contact_id, chat_id=chat_id, thread_id=thread_id))


async def forget_topic(session: Tx, contact_id: int) -> None:
    """Forget the contact's staff topic (staff deleted it); the next post creates a new one."""
    await session.execute(delete(StaffThread).where(StaffThread.contact_id == contact_id))


async def remember_post(
    session: Tx,
    chat_id: int,
    message_id: int,
    contact_id: int,
    confirmation_id: int | None,
    draft_id: int | None = None,
) -> None:
    """Remember that our message `message_id` in `chat_id` is about the contact (and the
    confirmation or draft it shows)."""
    await session.merge(
        StaffPost(
            chat_id=chat_id,
            message_id=message_id,
            contact_id=contact_id,
            confirmation_id=confirmation_id,
            draft_id=draft_id,
        )
    )


async def contact_of_staff_message(
    session: Tx, chat_id: int, *, thread_id: int | None, reply_to: int | None
) -> Contact | None:
    """The contact a staff message is about: by the topic it is in, else by the post of ours
    it replies to; None when it is about no contact we know."""
    contact_id = None
    if thread_id is not None:
        query = select(StaffThread.contact_id).where(
            StaffThread.chat_id == chat_id, StaffThread.thread_id == thread_id
        )
        contact_id = (await session.execute(query)).scalar_one_or_none()
    if contact_id is None and reply_to is not None:
        post = await session.get(StaffPost, (chat_id, reply_to))
        contact_id = post.contact_id if post is not None else None
    return await session.get(Contact, contact_id) if contact_id is not None else None
