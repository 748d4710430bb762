"""python-telegram-bot handlers: admin commands, the staff group, confirmation buttons.

Customer messages never reach these handlers: `UpdateIntake` stores them directly.

Every update here is applied once by its `update_id`, whatever its kind, by long polling or
webhook, however often Telegram delivers it. The update's `handled_updates` marker, its effects
and its acknowledgement are written in one transaction; acknowledgements are queued in the
outbox, never sent straight to Telegram. A replay finds the marker and does nothing, and a
crash before the commit leaves nothing done, so the replay then applies all of it.

Messages from bots are never commands nor staff replies. Only members of the staff group act
as staff, and never the customer a topic is about. Refusals are counted by the host's `refusals`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import BotCommand, Message, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters
from telegram.ext import MessageHandler as TgMessageHandler

from bot.core.safe_text import visible, visible_line
from bot.desk.drafts import DraftNotSent, decide_draft, edit_draft, save_to_kb
from bot.desk.staff import (
    StaffMember,
    add_note,
    decide,
    reply_to_customer,
    set_conversation_state,
)
from bot.store import outbox
from bot.store.db import Tx
from bot.store.drafts import draft_of_post
from bot.store.handled import first_time
from bot.store.models import Contact
from bot.store.staff_topics import contact_of_staff_message
from channels.host import Admin, AdminPort, Host
from channels.telegram.commands import Command, parse_command
from channels.telegram.membership import StaffMembership
from channels.telegram.normalize import CHANNEL

log = logging.getLogger("channels.telegram")
Context = ContextTypes.DEFAULT_TYPE
T = TypeVar("T")
TOPIC_COMMANDS = [
    BotCommand("note", "Staff topic: add an internal note"),
    BotCommand("resume", "Staff topic: hand the conversation back to the agent"),
    BotCommand("close", "Staff topic: close the conversation"),
]
_CONFIRM = re.compile(r"^confirm:(\d+):(approve|reject)$")
_DRAFT = re.compile(r"^draft:(\d+):(approve|edit|reject|save)$")
HOW_TO_EDIT = (
    "Reply to the draft's message with your corrected text: it is sent to the customer "
    "instead of the draft."
)
ONLY_ADMINS = "Sorry, only admins can use this command."
EDITS_NOT_PASSED_ON = (
    "Edits are not passed on: the customer already has the first version. "
    "Send a new message to correct it."
)
ONLY_STAFF = "Not done: only staff can answer customers or change this conversation."
WHICH_CUSTOMER = (
    "I can't tell which customer this is for. Reply to the handoff summary "
    "or write in the customer's topic."
)
STAFF_USAGE = "Usage: /note TEXT, /resume or /close; anything else goes to the customer."


def menu(admins: AdminPort) -> list[BotCommand]:
    """The bot's command menu: every admin command, then the staff-topic ones."""
    return [BotCommand(name, admins.description(name)) for name in admins.names()] + TOPIC_COMMANDS


def update_key(update_id: int) -> str:
    """The `handled_updates` key of a Telegram update."""
    return f"telegram:update:{update_id}"


@dataclass(frozen=True, slots=True)
class Origin:
    """The message an acknowledgement answers: its update, chat, forum topic and id."""

    update_id: int
    chat_id: int
    thread_id: int | None
    message_id: int

    @classmethod
    def of(cls, update: Update, message: Message) -> Origin:
        thread_id = message.message_thread_id if message.is_topic_message else None
        return cls(update.update_id, message.chat_id, thread_id, message.message_id)


async def queue_reply(session: Tx, origin: Origin, text: str) -> None:
    """Queue the acknowledgement of `origin`: a reply to it, in its topic, sent once."""
    meta: dict[str, Any] = {"reply_to_message_id": origin.message_id}
    if origin.thread_id is not None:
        meta["thread_id"] = origin.thread_id
    await outbox.enqueue(
        session,
        key=f"{update_key(origin.update_id)}:reply",
        conversation_id=None,
        contact_id=None,
        channel=CHANNEL,
        recipient=str(origin.chat_id),
        text=visible(text),  # replies quote names and texts from outside (/audit, /agent)
        author="system",
        meta=meta,
        to_contact=False,
    )


def _saying(text: str) -> Callable[[Tx], Awaitable[str]]:
    async def reply(session: Tx) -> str:
        return text

    return reply


async def _nothing(session: Tx) -> bool:
    return True


class TelegramHandlers:
    """Admins, staff and their buttons."""

    def __init__(
        self,
        app: Host,
        admins: AdminPort,
        *,
        staff_chat_id: int,
        admin_ids: set[int],
        membership_ttl: float = 60.0,
    ) -> None:
        self.app, self.admins = app, admins
        self.staff_chat_id, self.admin_ids = staff_chat_id, admin_ids
        self.membership = StaffMembership(staff_chat_id, ttl=membership_ttl)

    def install(self, application: Application) -> None:  # type: ignore[type-arg]
        places = filters.ChatType.PRIVATE | filters.Chat(self.staff_chat_id)
        application.add_handler(
            CommandHandler(list(self.admins.names()), self.on_admin, filters=places)
        )
        application.add_handler(CallbackQueryHandler(self.on_button, pattern=_CONFIRM))
        application.add_handler(CallbackQueryHandler(self.on_draft_button, pattern=_DRAFT))
        application.add_handler(
            TgMessageHandler(
                filters.Chat(self.staff_chat_id) & ~filters.StatusUpdate.ALL & ~filters.VIA_BOT,
                self.on_staff_message,
            )
        )

    # Once per update

    async def _once(self, update_id: int, work: Callable[[Tx], Awaitable[T]]) -> T | None:
        """Run `work` in one transaction with the update's marker; None, and nothing done,
        when the update was handled before."""
        async with self.app.db.transaction() as session:
            if not await first_time(session, update_key(update_id)):
                log.debug("update %s was handled before; skipped", update_id)
                return None
            result = await work(session)
        self.app.wake_outbox()
        return result

    async def _answer(self, origin: Origin, work: Callable[[Tx], Awaitable[str | None]]) -> bool:
        """Apply `work` once, queuing its reply (if any) with it; False if handled before."""

        async def apply(session: Tx) -> bool:
            reply = await work(session)
            if reply:
                await queue_reply(session, origin, reply)
            return True

        return await self._once(origin.update_id, apply) is not None

    async def _refuse(
        self, origin: Origin, source: str, reason: str, detail: dict[str, Any], reply: str
    ) -> None:
        """Answer a refused request once, and count it (refusals are audited per minute)."""
        if await self._answer(origin, _saying(reply)):
            await self.app.refusals.refuse(source, reason, detail)

    # Admin commands

    async def on_admin(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        command = parse_command(message.text) if message is not None else None
        if message is None or user is None or user.is_bot or command is None:
            return  # a bot is never an admin, whatever its id
        origin = Origin.of(update, message)
        if user.id not in self.admin_ids:
            detail = {"user": user.id, "command": command.name}
            await self._refuse(
                origin, "telegram:admin_command", "not an admin", detail, ONLY_ADMINS
            )
            return
        admin = Admin(f"telegram:{user.id}")
        if self.admins.stands_alone(command.name, command.rest):
            await self._alone(origin, admin, command.name, command.rest)
            return
        await self._answer(
            origin,
            lambda session: self.admins.command_in(session, admin, command.name, command.rest),
        )

    async def _alone(self, origin: Origin, admin: Admin, name: str, text: str) -> None:
        """`/agent test`, `/jobs ...`: at most once, never twice.

        These take transactions of their own, so they cannot share one with the update's
        marker: the update is marked handled first, then the command runs, then the reply is
        queued. A crash mid-run loses the reply (the audit trail keeps what it did); a replay
        of the update never runs the command again.
        """
        if await self._once(origin.update_id, _nothing) is None:
            return
        reply = await self.admins.command_alone(admin, name, text)
        async with self.app.db.transaction() as session:
            await queue_reply(session, origin, reply)
        self.app.wake_outbox()

    # The staff group

    async def on_staff_message(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return  # a bot's message is never a staff reply nor a command
        text = message.text or message.caption or ""
        command = parse_command(text)
        if command is not None and not command.is_for(context.bot.username):
            return  # a command for another bot in the group
        origin = Origin.of(update, message)
        contact = await self._topic_contact(message)
        if contact is None:
            if _replies_to(message, context.bot.id):
                await self._answer(origin, _saying(WHICH_CUSTOMER))
            return
        if not text:
            return
        refused = await self._why_not_staff(context, user.id, contact)
        if refused is not None:
            detail = {"user": user.id, "contact": contact.id}
            await self._refuse(origin, "telegram:staff_topic", refused, detail, ONLY_STAFF)
            return
        if update.edited_message is not None:
            # The customer already has the first version; an edit must not send a second reply
            # or save a second note.
            await self._answer(origin, _saying(EDITS_NOT_PASSED_ON))
            return
        staff, contact_id = StaffMember(f"telegram:{user.id}", user.full_name), contact.id
        reply_to = message.reply_to_message.message_id if message.reply_to_message else None
        try:
            await self._answer(
                origin,
                lambda session: self._staff_action(
                    session, contact_id, text, command, staff, message.message_id, reply_to
                ),
            )
        except DraftNotSent as error:
            await self._answer(origin, _saying(f"Not sent: {error}."))

    async def _staff_action(
        self,
        session: Tx,
        contact_id: int,
        text: str,
        command: Command | None,
        staff: StaffMember,
        message_id: int,
        reply_to: int | None = None,
    ) -> str | None:
        """Carry out a staff message in the caller's transaction; returns the reply, if any.

        A reply to a draft's card is the draft's corrected text (Edit)."""
        audit = self.app.audit
        draft = (
            await draft_of_post(session, self.staff_chat_id, reply_to)
            if reply_to is not None and command is None
            else None
        )
        if draft is not None and draft.contact_id == contact_id:
            result = await edit_draft(session, audit, draft_id=draft.id, text=text, staff=staff)
            return None if result == "edited" else f"Not sent: {result}."
        if command is None:
            key = f"staff:{self.staff_chat_id}:{message_id}"
            status = await reply_to_customer(
                session, audit, contact_id=contact_id, text=text, key=key, staff=staff
            )
            return None if status in ("sent", "already sent") else f"Not sent: {status}."
        if command.name == "note":
            if not command.rest.strip():
                return "Usage: /note TEXT"
            await add_note(
                session, audit, contact_id=contact_id, text=command.rest.strip(), staff=staff
            )
            return "📝 Note saved (not sent to the customer)."
        if command.name in ("close", "resume"):
            state = "closed" if command.name == "close" else "bot"
            result = await set_conversation_state(
                session, audit, contact_id=contact_id, state=state, staff=staff
            )
            return f"Conversation {result}."
        return STAFF_USAGE

    async def _topic_contact(self, message: Message) -> Contact | None:
        """The contact a staff message is about: by its topic, else by the post it replies to."""
        thread_id = message.message_thread_id if message.is_topic_message else None
        reply_to = message.reply_to_message.message_id if message.reply_to_message else None
        async with self.app.db.transaction() as session:
            return await contact_of_staff_message(
                session, self.staff_chat_id, thread_id=thread_id, reply_to=reply_to
            )

    async def _why_not_staff(self, context: Context, user_id: int, contact: Contact) -> str | None:
        """Why the user may not act in the contact's topic; None if they may.

        Only staff may; the contact never may, even as a member of the staff group.
        """
        if contact.telegram_user_id == user_id:
            return "the topic's own customer"
        return None if await self._is_staff(context, user_id) else "not staff"

    async def _is_staff(self, context: Context, user_id: int) -> bool:
        return user_id in self.admin_ids or await self.membership.is_member(context.bot, user_id)

    # Confirmation buttons

    async def on_button(self, update: Update, context: Context) -> None:
        """Decide a confirmation once; `answer` and the message edit are immediate UI."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.data is None:
            return
        found = _CONFIRM.match(query.data)
        if found is None or user.is_bot or not await self._is_staff(context, user.id):
            if await self._once(update.update_id, _nothing):
                await self.app.refusals.refuse("telegram:button", "not staff", {"user": user.id})
                await query.answer("Only staff can decide this.", show_alert=True)
            return
        staff = StaffMember(f"telegram:{user.id}", user.full_name)
        confirmation_id, approve = int(found[1]), found[2] == "approve"
        result = await self._once(
            update.update_id,
            lambda session: decide(
                session,
                self.app.audit,
                confirmation_id=confirmation_id,
                approve=approve,
                staff=staff,
            ),
        )
        if result is None:
            return
        await query.answer(result)
        if query.message is not None and result in ("approved", "rejected"):  # decided now
            text = getattr(query.message, "text", "") or ""
            who = visible_line(user.full_name)
            await query.edit_message_text(f"{text}\n\n{result.capitalize()} by {who}.")

    # Draft buttons

    async def on_draft_button(self, update: Update, context: Context) -> None:
        """Approve, reject or save a draft once; Edit only says how to edit (by replying)."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.data is None:
            return
        found = _DRAFT.match(query.data)
        if found is None or user.is_bot or not await self._is_staff(context, user.id):
            if await self._once(update.update_id, _nothing):
                await self.app.refusals.refuse("telegram:button", "not staff", {"user": user.id})
                await query.answer("Only staff can decide this.", show_alert=True)
            return
        draft_id, action = int(found[1]), found[2]
        if action == "edit":
            await query.answer(HOW_TO_EDIT, show_alert=True)
            return
        staff = StaffMember(f"telegram:{user.id}", user.full_name)
        audit = self.app.audit

        async def work(session: Tx) -> str:
            if action == "save":
                return await save_to_kb(session, audit, draft_id=draft_id, staff=staff)
            approve = action == "approve"
            return await decide_draft(
                session, audit, draft_id=draft_id, approve=approve, staff=staff
            )

        try:
            result = await self._once(update.update_id, work)
        except DraftNotSent as error:
            await query.answer(f"Not sent: {error}", show_alert=True)
            return
        if result is None:
            return
        await query.answer(result)
        decided = result in ("approved", "rejected") or result.startswith("saved as")
        if query.message is not None and decided:
            text = getattr(query.message, "text", "") or ""
            who = visible_line(user.full_name)
            done = "Saved to the knowledge base" if action == "save" else result.capitalize()
            await query.edit_message_text(f"{text}\n\n{done} by {who}.")


def _replies_to(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == bot_id)
