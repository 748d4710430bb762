"""Turn a Telegram message into our normalized inbound message."""

from __future__ import annotations

from typing import Any

from telegram import Message, Update

from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage

CHANNEL = "telegram"


def _attachments(message: Message) -> list[dict[str, Any]]:
    """Metadata only: files are never downloaded or opened."""
    found: list[dict[str, Any]] = []
    if message.photo:
        largest = message.photo[-1]
        found.append(
            {
                "type": "photo",
                "file_id": largest.file_id,
                "width": largest.width,
                "height": largest.height,
                "size": largest.file_size,
            }
        )
    if message.document:
        doc = message.document
        found.append(
            {
                "type": "document",
                "file_id": doc.file_id,
                "name": doc.file_name,
                "mime_type": doc.mime_type,
                "size": doc.file_size,
            }
        )
    for kind in ("voice", "audio", "video", "video_note", "sticker"):
        media = getattr(message, kind, None)
        if media is not None:
            found.append(
                {"type": kind, "file_id": media.file_id, "size": getattr(media, "file_size", None)}
            )
    return found


def _text_and_source(message: Message) -> tuple[str, str | None]:
    """The message text, and a /start deep-link payload kept as the lead source."""
    text = message.text or message.caption or ""
    if text.startswith("/start"):
        payload = text.partition(" ")[2].strip()
        return (
            "(opened the chat)" if not payload else f"(opened the chat from {payload})",
            payload or None,
        )
    return text, None


def inbound_from_update(update: Update) -> InboundMessage | None:
    """A private message (or edit) from a person as an inbound message; None otherwise."""
    message = update.message or update.edited_message
    if message is None or message.chat.type != "private":
        return None
    user = message.from_user
    if user is None or user.is_bot:
        return None
    edited = update.edited_message is not None
    text, lead_source = _text_and_source(message)
    phone = None
    if message.contact is not None:
        phone = message.contact.phone_number if message.contact.user_id == user.id else None
        text = text or f"(shared a contact: {message.contact.phone_number})"
    if edited:
        text = f"(edited an earlier message) {text}"
    external_id = f"{message.chat.id}:{message.message_id}"
    if edited:
        stamp = message.edit_date.timestamp() if message.edit_date else update.update_id
        external_id += f":edit:{int(stamp)}"
    identity = Identity(
        channel=CHANNEL,
        address=str(message.chat.id),
        name=user.full_name,
        phone=phone,
        telegram_user_id=user.id,
        telegram_username=user.username,
        lead_source=lead_source,
    )
    return InboundMessage(
        identity=identity,
        external_id=external_id,
        text=text,
        attachments=_attachments(message),
        meta={
            "telegram": {
                "chat_id": message.chat.id,
                "message_id": message.message_id,
                "edited": edited,
                "update_id": update.update_id,
            }
        },
        sent_at=message.date,
    )
