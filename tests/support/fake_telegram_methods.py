"""The Bot API methods of the fake Telegram: what each one does to the world, or the error.

No HTTP here (that is `fake_telegram.py`): each method takes the decoded parameters and returns
the `result` of the answer, or raises `ApiError` with the status and description the real Bot
API gives for the same mistake (https://core.telegram.org/bots/api).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.support.fake_telegram_text import EntityParseError, plain_text
from tests.support.fake_telegram_updates import (
    DEFAULT_TOPIC_COLOR,
    GENERAL_TOPIC,
    JSON,
    TelegramWorld,
    chat_member,
    now,
)

MAX_TEXT = 4096
MAX_CAPTION = 1024
BLOCKED = "Forbidden: bot was blocked by the user"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
_CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
    | {"upload_document", "choose_sticker", "find_location", "record_video_note"}
    | {"upload_video_note"}
)
_CONTENT_KEYS = ("text", "entities", "caption", "caption_entities", "photo", "document")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")

Handler = Callable[[JSON], Awaitable[Any]]


@dataclass
class Webhook:
    """What the last setWebhook registered; `url` is empty when no webhook is set."""

    url: str = ""
    secret_token: str | None = None
    drop_pending_updates: bool = False
    allowed_updates: list[str] | None = None
    max_connections: int | None = None


class ApiError(Exception):
    """An error answer, with the status and description the real Bot API gives."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class BotApi(TelegramWorld):
    """The Bot API methods, by lower-cased name in `methods` (Telegram ignores their case)."""

    def __init__(self, bot_user: JSON) -> None:
        super().__init__(bot_user)
        self.webhook = Webhook()
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        """(scope as JSON, language code) -> the commands setMyCommands stored."""
        self.methods: dict[str, Handler] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "copymessage": self._copy_message,
            "senddocument": self._send_document,
            "sendchataction": self._send_chat_action,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "createforumtopic": self._create_forum_topic,
            "deleteforumtopic": self._delete_forum_topic,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "getchatmember": self._get_chat_member,
            "getfile": self._get_file,
        }

    # Checks shared by the methods

    def _plain(self, text: str, parse_mode: str | None) -> str:
        try:
            return plain_text(text, parse_mode)
        except EntityParseError as error:
            raise ApiError(400, f"Bad Request: {error}") from None

    def _check_destination(self, chat_id: int, thread_id: int | None) -> None:
        if chat_id in self.blocked:
            raise ApiError(403, BLOCKED)
        if thread_id is None or thread_id == GENERAL_TOPIC:
            return
        forum_topics = self.topics.get(chat_id)
        if (chat_id, thread_id) in self.deleted_topics or (
            forum_topics is not None and thread_id not in forum_topics
        ):
            raise ApiError(400, THREAD_NOT_FOUND)

    def _attach(self, message: JSON, params: JSON) -> JSON:
        """Add reply_to_message and an inline keyboard, then store the message."""
        reply_to = params.get("reply_parameters", {}).get("message_id")
        reply_to = reply_to or params.get("reply_to_message_id")
        original = self.messages.get((message["chat"]["id"], as_int(reply_to) or 0))
        if original is not None:
            message["reply_to_message"] = original
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return self.store(message)

    def _edited(self, params: JSON) -> JSON:
        key = (_chat_id(params), as_int(_need(params, "message_id")) or 0)
        message = self.messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _replace(self, message: JSON, edited: JSON) -> JSON:
        if edited == message:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        return self.store(edited | {"edit_date": now()})

    # Methods

    async def _get_me(self, params: JSON) -> JSON:
        return self.bot_user | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = _chat_id(params)
        thread_id = as_int(params.get("message_thread_id"))
        self._check_destination(chat_id, thread_id)
        text = params.get("text")
        if not text:
            raise ApiError(400, "Bad Request: message text is empty")
        shown = self._plain(str(text), params.get("parse_mode"))
        if len(shown) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        message = self.new_message(chat_id, self.bot_user, thread_id)
        message["text"] = shown
        return self._attach(message, params)

    async def _send_document(self, params: JSON) -> JSON:
        """An uploaded file (multipart) or a known file_id, with an optional caption."""
        chat_id = _chat_id(params)
        thread_id = as_int(params.get("message_thread_id"))
        self._check_destination(chat_id, thread_id)
        document = params.get("document")
        if isinstance(document, dict) and "content" in document:
            name, content = str(document.get("filename") or "document"), document["content"]
        elif isinstance(document, str) and document in self.files:
            file, content = self.files[document]
            name = file["file_path"].rsplit("/", 1)[-1]
        else:
            raise ApiError(400, "Bad Request: there is no document in the request")
        message = self.new_message(chat_id, self.bot_user, thread_id)
        message["document"] = self._document(name, content)
        if params.get("caption"):
            caption = self._plain(str(params["caption"]), params.get("parse_mode"))
            if len(caption) > MAX_CAPTION:
                raise ApiError(400, "Bad Request: message caption is too long")
            message["caption"] = caption
        return self._attach(message, params)

    async def _copy_message(self, params: JSON) -> JSON:
        chat_id = _chat_id(params)
        thread_id = as_int(params.get("message_thread_id"))
        self._check_destination(chat_id, thread_id)
        source_key = (_chat_id(params, "from_chat_id"), as_int(_need(params, "message_id")) or 0)
        source = self.messages.get(source_key)
        if source is None:
            raise ApiError(400, "Bad Request: message to copy not found")
        copy = self.new_message(chat_id, self.bot_user, thread_id)
        copy |= {key: source[key] for key in _CONTENT_KEYS if key in source}
        if "caption" in params:
            copy["caption"] = self._plain(params["caption"], params.get("parse_mode"))
        return {"message_id": self._attach(copy, params)["message_id"]}

    async def _send_chat_action(self, params: JSON) -> bool:
        chat_id = _chat_id(params)
        self._check_destination(chat_id, as_int(params.get("message_thread_id")))
        if params.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _edit_message_text(self, params: JSON) -> JSON | bool:
        text = self._plain(str(_need(params, "text")), params.get("parse_mode"))
        if "inline_message_id" in params:
            return True
        message = self._edited(params)
        edited = {k: v for k, v in message.items() if k not in ("entities", "reply_markup")}
        edited["text"] = text
        return self._replace(message, self._with_markup(edited, params))

    async def _edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        if "inline_message_id" in params:
            return True
        message = self._edited(params)
        edited = {k: v for k, v in message.items() if k != "reply_markup"}
        return self._replace(message, self._with_markup(edited, params))

    def _with_markup(self, message: JSON, params: JSON) -> JSON:
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            message["reply_markup"] = markup
        return message

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = str(_need(params, "callback_query_id"))
        if query_id not in self.callback_queries:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.callback_queries.discard(query_id)
        return True

    async def _create_forum_topic(self, params: JSON) -> JSON:
        chat_id = _chat_id(params)
        if chat_id not in self.topics:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: TOPIC_NAME_INVALID")
        emoji = params.get("icon_custom_emoji_id")
        extra = {"icon_custom_emoji_id": emoji} if emoji else {}
        color = as_int(params.get("icon_color")) or DEFAULT_TOPIC_COLOR
        return self.add_topic(chat_id, name, icon_color=color, **extra)

    async def _delete_forum_topic(self, params: JSON) -> bool:
        chat_id = _chat_id(params)
        thread_id = as_int(_need(params, "message_thread_id")) or 0
        if chat_id not in self.topics:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if thread_id not in self.topics[chat_id]:
            raise ApiError(400, "Bad Request: TOPIC_ID_INVALID")
        self.delete_topic(chat_id, thread_id)
        return True

    async def _set_webhook(self, params: JSON) -> bool:
        url = str(params.get("url") or "")
        if url and not url.startswith("https://"):
            raise ApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        drop = bool(params.get("drop_pending_updates"))
        if drop:
            self.pending.clear()
        self.webhook = Webhook(
            url, secret, drop, params.get("allowed_updates"), as_int(params.get("max_connections"))
        )
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates"):
            self.pending.clear()
        self.webhook = Webhook()
        return True

    async def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
        }
        if self.webhook.url:
            info["max_connections"] = self.webhook.max_connections or 40
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
        return info

    async def _set_my_commands(self, params: JSON) -> bool:
        commands = _need(params, "commands")
        for command in commands:
            if not _COMMAND.fullmatch(str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[_commands_key(params)] = commands
        return True

    async def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands.get(_commands_key(params), [])

    async def _get_chat_member(self, params: JSON) -> JSON:
        chat_id = _chat_id(params)
        user_id = as_int(_need(params, "user_id")) or 0
        return chat_member(self.user(user_id), self.members.get((chat_id, user_id), "left"))

    async def _get_file(self, params: JSON) -> JSON:
        stored = self.files.get(str(_need(params, "file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return stored[0]


def as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _need(params: JSON, name: str) -> Any:
    if params.get(name) in (None, ""):
        raise ApiError(400, f"Bad Request: {name} is empty")
    return params[name]


def _chat_id(params: JSON, name: str = "chat_id") -> int:
    chat_id = as_int(_need(params, name))
    if chat_id is None:  # an @username of a chat the fake does not know
        raise ApiError(400, "Bad Request: chat not found")
    return chat_id


def _commands_key(params: JSON) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")
