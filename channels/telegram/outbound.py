"""Outbox delivery to Telegram: customers' private chats, and the staff group's topics."""

from __future__ import annotations

import logging

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, TelegramError

from bot.core.ics import read_invite_meta
from bot.desk.staff import STAFF_CHANNEL, topic_title
from bot.store.contacts import get_contact
from bot.store.db import Database
from bot.store.models import OutboxItem
from bot.store.staff_topics import forget_topic, remember_post, remember_topic, topic_of
from channels.base import Channel, DeliveryResult, Failed, Sent
from channels.telegram.normalize import CHANNEL
from channels.telegram.pacing import Pacing
from channels.telegram.sending import classify, is_missing_thread, send_invite, send_text

MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit for one message's text, in characters after entity parsing."""
log = logging.getLogger("channels.telegram")


class CustomerChannel(Channel):
    """Delivers outbox items to the chat `item.recipient`: a customer's private chat, or any
    chat for a post about no conversation (an admin's reply).

    Optional meta: `thread_id` (the forum topic to post in), `reply_to_message_id` (sent even
    if that message is gone), `parse_mode`; a meeting invite (`bot.core.ics.META_KEY`) goes
    as its `.ics` document with the text as the caption.
    """

    name = CHANNEL
    text_limit = MAX_MESSAGE_LENGTH

    def __init__(self, bot: Bot, pacing: Pacing) -> None:
        self.bot, self.pacing = bot, pacing

    async def pace(self, item: OutboxItem) -> float | None:
        chat_id = _chat_id(item)
        return None if chat_id is None else await self.pacing.reserve(chat_id)

    def spacing(self, item: OutboxItem) -> float | None:
        chat_id = _chat_id(item)
        return None if chat_id is None else self.pacing.spacing(chat_id)

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        chat_id = _chat_id(item)
        if chat_id is None:
            return Failed(f"not a Telegram chat id: {item.recipient!r}")
        meta = item.meta or {}
        try:
            invite = read_invite_meta(meta)
        except ValueError as error:
            return Failed(f"cannot send the meeting invite: {error}")
        try:
            if invite is not None:
                sent = await send_invite(
                    self.bot, chat_id, item.text, *invite, paid_broadcast=self.pacing.paid_broadcast
                )
            else:
                sent = await send_text(
                    self.bot,
                    chat_id,
                    item.text,
                    thread_id=meta.get("thread_id"),
                    reply_to=meta.get("reply_to_message_id"),
                    parse_mode=meta.get("parse_mode"),
                    paid_broadcast=self.pacing.paid_broadcast,
                )
        except TelegramError as error:
            return classify(error)
        return Sent(f"{chat_id}:{sent.message_id}")


def _chat_id(item: OutboxItem) -> int | None:
    try:
        return int(item.recipient)
    except ValueError:
        return None  # nothing to pace; `deliver` fails it


def confirmation_buttons(confirmation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "✅ Approve", callback_data=f"confirm:{confirmation_id}:approve"
                ),
                InlineKeyboardButton("✖️ Reject", callback_data=f"confirm:{confirmation_id}:reject"),
            ]
        ]
    )


def draft_buttons(draft_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("✅ Approve", callback_data=f"draft:{draft_id}:approve"),
                InlineKeyboardButton("✏️ Edit", callback_data=f"draft:{draft_id}:edit"),
                InlineKeyboardButton("✖️ Reject", callback_data=f"draft:{draft_id}:reject"),
            ]
        ]
    )


def save_button(draft_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "💾 Save to knowledge base", callback_data=f"draft:{draft_id}:save"
                )
            ]
        ]
    )


def buttons_for(meta: dict[str, object]) -> InlineKeyboardMarkup | None:
    """The buttons a staff post carries: a confirmation's, a draft's, or the save offer."""
    if meta.get("confirmation_id"):
        return confirmation_buttons(int(str(meta["confirmation_id"])))
    if meta.get("draft_id"):
        draft_id = int(str(meta["draft_id"]))
        return save_button(draft_id) if meta.get("save_offer") else draft_buttons(draft_id)
    return None


class StaffChannel(Channel):
    """Delivers staff posts: one forum topic per contact, created once and reused.

    A topic staff deleted is recreated on the next post. In a group without topics, posts go
    to the group itself and staff answer by replying to them.
    """

    name = STAFF_CHANNEL
    text_limit = MAX_MESSAGE_LENGTH
    first_kinds: tuple[str, ...] = ("summary",)  # 20 posts a minute: new handoffs first

    def __init__(self, bot: Bot, pacing: Pacing, db: Database, chat_id: int) -> None:
        self.bot, self.pacing, self.db, self.chat_id = bot, pacing, db, chat_id

    async def pace(self, item: OutboxItem) -> float | None:
        return await self.pacing.reserve(self.chat_id)

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        try:
            thread_id = await self._thread(item.contact_id)
            try:
                message_id = await self._post(item, thread_id)
            except BadRequest as error:
                if thread_id is None or item.contact_id is None or not is_missing_thread(error):
                    raise
                log.info(
                    "staff topic %s of contact %s is gone; recreating", thread_id, item.contact_id
                )
                await self._forget_thread(item.contact_id)
                message_id = await self._post(item, await self._thread(item.contact_id))
        except TelegramError as error:
            return classify(error)
        await self._remember_post(item, message_id)
        return Sent(f"{self.chat_id}:{message_id}")

    async def _post(self, item: OutboxItem, thread_id: int | None) -> int:
        meta = item.meta or {}
        if meta.get("copy_from_chat") and meta.get("copy_message_id"):
            copied = await self.bot.copy_message(
                self.chat_id,
                meta["copy_from_chat"],
                meta["copy_message_id"],
                message_thread_id=thread_id,
            )
            return copied.message_id
        sent = await send_text(
            self.bot, self.chat_id, item.text, thread_id=thread_id, reply_markup=buttons_for(meta)
        )
        return sent.message_id

    async def _thread(self, contact_id: int | None) -> int | None:
        if contact_id is None:
            return None  # about no contact: the group's general thread
        async with self.db.reading() as session:  # a topic is made once; then only read
            thread = await topic_of(session, contact_id)
            if thread is not None and thread.chat_id == self.chat_id:
                return thread.thread_id
            contact = await get_contact(session, contact_id)
            title = topic_title(contact)
        thread_id = await self._create_topic(title)
        async with self.db.transaction() as session:
            await remember_topic(session, contact_id, self.chat_id, thread_id)
        return thread_id

    async def _create_topic(self, title: str) -> int | None:
        try:
            topic = await self.bot.create_forum_topic(self.chat_id, title)
        except BadRequest as error:
            if "not a forum" in error.message.lower():
                return None  # a plain group: staff reply to the posts instead
            raise
        return topic.message_thread_id

    async def _forget_thread(self, contact_id: int) -> None:
        async with self.db.transaction() as session:
            await forget_topic(session, contact_id)

    async def _remember_post(self, item: OutboxItem, message_id: int) -> None:
        if item.contact_id is None:
            return  # replies to a post about no contact route nowhere
        async with self.db.transaction() as session:
            meta = item.meta or {}
            # Only the draft's own card routes replies to the draft (as its edit).
            draft_id = None if meta.get("save_offer") else meta.get("draft_id")
            await remember_post(
                session,
                self.chat_id,
                message_id,
                item.contact_id,
                meta.get("confirmation_id"),
                draft_id,
            )
