"""Sending through the Bot API and classifying every failure for the outbox.

- 429: wait `retry_after`, then retry.
- 5xx and failures before the request reached Telegram (connect or pool timeout, refused
  connection): retry with backoff.
- 403 (the user blocked the bot), "chat not found": the contact is unreachable.
- A timeout after the request was sent: the outcome is unknown; never resent blindly.
- Formatting Telegram rejects: sent again as plain text.

A meeting invite goes as one `sendDocument`: the `.ics` file with the confirmation as its
caption, so the contact gets one message, and one request decides whether it arrived.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardMarkup, InputFile, ReplyParameters
from telegram import Message as TgMessage
from telegram.error import (
    BadRequest,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.core import ics
from channels.base import DeliveryResult, Failed, RetryLater, Unknown

_UNSENT_CAUSES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_CAPTION_LENGTH = 1024
"""Telegram's limit for a document's caption, in characters after entity parsing."""


def is_parse_error(error: TelegramError) -> bool:
    return isinstance(error, BadRequest) and "can't parse entities" in error.message.lower()


def is_missing_thread(error: TelegramError) -> bool:
    text = error.message.lower()
    return isinstance(error, BadRequest) and ("thread not found" in text or "topic" in text)


def retry_seconds(error: RetryAfter) -> float:
    value: Any = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def classify(error: TelegramError) -> DeliveryResult:
    """What the outbox should do after `error`."""
    if isinstance(error, RetryAfter):
        # Flood control refused the message outright: nothing was sent, and waiting as told
        # always gets it through, so it is not a failed attempt (counting it would fail a
        # message for good after a busy hour).
        return RetryLater(f"flood control: {error}", after=retry_seconds(error), throttled=True)
    if isinstance(error, Forbidden):
        return Failed(f"forbidden: {error.message}", unreachable=True)
    if isinstance(error, BadRequest):
        unreachable = "chat not found" in error.message.lower()
        return Failed(f"bad request: {error.message}", unreachable=unreachable)
    if isinstance(error, TimedOut):
        if isinstance(error.__cause__, _UNSENT_CAUSES) or "pool timeout" in error.message.lower():
            return RetryLater(f"not sent: {error.message}")
        return Unknown(f"timed out after sending: {error.message}")
    if isinstance(error, NetworkError):
        if error.__cause__ is None or isinstance(error.__cause__, _UNSENT_CAUSES):
            return RetryLater(f"network: {error.message}")  # an HTTP 5xx, or never connected
        return Unknown(f"connection lost mid-request: {error.message}")
    return Failed(f"{type(error).__name__}: {error.message}")


async def send_text(
    bot: Bot,
    chat_id: int,
    text: str,
    *,
    thread_id: int | None = None,
    reply_to: int | None = None,
    parse_mode: str | None = None,
    reply_markup: InlineKeyboardMarkup | None = None,
    paid_broadcast: bool = False,
) -> TgMessage:
    """Send one message; formatting that Telegram cannot parse falls back to plain text.

    A reply (`reply_to`) still goes out as a plain message if the message it answers is gone.
    `paid_broadcast` lifts Telegram's free 30 messages a second for a fee per message.
    """
    reply = (
        None
        if reply_to is None
        else ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
    )
    options: dict[str, Any] = {
        "message_thread_id": thread_id,
        "reply_parameters": reply,
        "reply_markup": reply_markup,
        "allow_paid_broadcast": True if paid_broadcast else None,
    }
    try:
        return await bot.send_message(chat_id, text, parse_mode=parse_mode, **options)
    except BadRequest as error:
        if parse_mode is None or not is_parse_error(error):
            raise
        return await bot.send_message(chat_id, text, **options)


async def send_invite(
    bot: Bot,
    chat_id: int,
    caption: str,
    event: ics.MeetingEvent,
    method: ics.Method,
    *,
    paid_broadcast: bool = False,
) -> TgMessage:
    """Send a meeting's `.ics` (an invitation or a cancellation) with `caption` as one
    message."""
    if len(caption) > MAX_CAPTION_LENGTH:
        caption = caption[: MAX_CAPTION_LENGTH - 1] + "…"
    document = InputFile(ics.invite(event, method), filename=ics.filename(method))
    return await bot.send_document(
        chat_id,
        document,
        caption=caption,
        allow_paid_broadcast=True if paid_broadcast else None,
    )
