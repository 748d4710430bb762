"""python-telegram-bot handlers: admin commands, the staff group, confirmation buttons.

Customer messages never reach these handlers: `UpdateIntake` stores them directly.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import select
from telegram import BotCommand, Update
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters
from telegram.ext import MessageHandler as TgMessageHandler

from bot.admin import Admin, AdminCommands
from bot.app import App
from bot.staff import (
    StaffMember,
    add_note,
    decide,
    reply_to_customer,
    set_conversation_state,
)
from bot.store.models import StaffPost, StaffThread
from bot.store.outbox import split_text

log = logging.getLogger("channels.telegram")
Context = ContextTypes.DEFAULT_TYPE
COMMANDS = [
    BotCommand(
        "agent", "Manage agents: list, show, create, set, enable, disable, assign, test, runs"
    ),
    BotCommand("audit", "Show what an agent run saw, decided and did: /audit RUN_ID"),
    BotCommand("note", "Staff topic: add an internal note"),
    BotCommand("resume", "Staff topic: hand the conversation back to the agent"),
    BotCommand("close", "Staff topic: close the conversation"),
]
STAFF_STATUSES = {ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
_CONFIRM = re.compile(r"^confirm:(\d+):(approve|reject)$")


class TelegramHandlers:
    """Admins, staff and their buttons."""

    def __init__(
        self, app: App, admins: AdminCommands, *, staff_chat_id: int, admin_ids: set[int]
    ) -> None:
        self.app, self.admins = app, admins
        self.staff_chat_id, self.admin_ids = staff_chat_id, admin_ids

    def install(self, application: Application) -> None:  # type: ignore[type-arg]
        places = filters.ChatType.PRIVATE | filters.Chat(self.staff_chat_id)
        application.add_handler(CommandHandler(["agent", "audit"], self.on_admin, filters=places))
        application.add_handler(CallbackQueryHandler(self.on_button, pattern=_CONFIRM))
        application.add_handler(
            TgMessageHandler(
                filters.Chat(self.staff_chat_id) & ~filters.StatusUpdate.ALL & ~filters.VIA_BOT,
                self.on_staff_message,
            )
        )
        application.add_error_handler(self.on_error)

    async def on_admin(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text:
            return
        command, _, rest = message.text.partition(" ")
        command = command.split("@")[0]
        if user.id not in self.admin_ids:
            await self.admins.refuse(f"telegram:{user.id}", message.text)
            await message.reply_text("Sorry, only admins can use this command.")
            return
        admin = Admin(f"telegram:{user.id}")
        reply = (
            await self.admins.agent(admin, rest)
            if command == "/agent"
            else await self.admins.audit_run(admin, rest)
        )
        for part in split_text(reply, 4096):
            await message.reply_text(part)

    async def on_staff_message(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        contact_id = await self._contact_for(
            message.message_thread_id if message.is_topic_message else None,
            message.reply_to_message.message_id if message.reply_to_message else None,
        )
        text = message.text or message.caption or ""
        if contact_id is None:
            replied = message.reply_to_message
            if replied and replied.from_user and replied.from_user.id == context.bot.id:
                await message.reply_text(
                    "I can't tell which customer this is for. Reply to the handoff summary "
                    "or write in the customer's topic."
                )
            return
        if not text:
            return
        staff = StaffMember(f"telegram:{user.id}", user.full_name)
        reply = await self._staff_action(contact_id, text, staff, message.message_id)
        if reply:
            await message.reply_text(reply)

    async def _staff_action(
        self, contact_id: int, text: str, staff: StaffMember, message_id: int
    ) -> str | None:
        command, _, rest = text.partition(" ")
        command = command.split("@")[0]
        async with self.app.db.transaction() as session:
            if command == "/note":
                if not rest.strip():
                    return "Usage: /note TEXT"
                await add_note(
                    session, self.app.audit, contact_id=contact_id, text=rest.strip(), staff=staff
                )
                return "📝 Note saved (not sent to the customer)."
            if command in ("/close", "/resume"):
                state = "closed" if command == "/close" else "bot"
                result = await set_conversation_state(
                    session, self.app.audit, contact_id=contact_id, state=state, staff=staff
                )
                return f"Conversation {result}."
            if command.startswith("/"):
                return "Usage: /note TEXT, /resume or /close; anything else goes to the customer."
            status = await reply_to_customer(
                session,
                self.app.audit,
                contact_id=contact_id,
                text=text,
                key=f"staff:{self.staff_chat_id}:{message_id}",
                staff=staff,
            )
        self.app.wake_outbox()
        return None if status in ("sent", "already sent") else f"Not sent: {status}."

    async def _contact_for(self, thread_id: int | None, reply_to: int | None) -> int | None:
        async with self.app.db.transaction() as session:
            if thread_id is not None:
                found = (
                    await session.execute(
                        select(StaffThread.contact_id).where(
                            StaffThread.chat_id == self.staff_chat_id,
                            StaffThread.thread_id == thread_id,
                        )
                    )
                ).scalar_one_or_none()
                if found is not None:
                    return found
            if reply_to is not None:
                post = await session.get(StaffPost, (self.staff_chat_id, reply_to))
                return post.contact_id if post is not None else None
        return None

    async def on_button(self, update: Update, context: Context) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.data is None:
            return
        found = _CONFIRM.match(query.data)
        if found is None or not await self._is_staff(context, user.id):
            await self.admins.refuse(f"telegram:{user.id}", f"button {query.data}")
            await query.answer("Only staff can decide this.", show_alert=True)
            return
        staff = StaffMember(f"telegram:{user.id}", user.full_name)
        async with self.app.db.transaction() as session:
            result = await decide(
                session,
                self.app.audit,
                confirmation_id=int(found[1]),
                approve=found[2] == "approve",
                staff=staff,
            )
        await query.answer(result)
        if query.message is not None and result in ("approved", "rejected"):
            text = getattr(query.message, "text", "") or ""
            await query.edit_message_text(f"{text}\n\n{result.capitalize()} by {user.full_name}.")

    async def _is_staff(self, context: Context, user_id: int) -> bool:
        if user_id in self.admin_ids:
            return True
        try:
            member = await context.bot.get_chat_member(self.staff_chat_id, user_id)
        except TelegramError:
            return False
        return member.status in STAFF_STATUSES

    async def on_error(self, update: object, context: Context) -> None:
        log.error(
            "handler failed for update %s",
            getattr(update, "update_id", "?"),
            exc_info=context.error,
        )
        async with self.app.db.transaction() as session:
            await self.app.audit.append(
                session,
                "update_failed",
                {"error": repr(context.error)[:500]},
                actor="channel:telegram",
            )
