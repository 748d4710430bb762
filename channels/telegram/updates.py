"""Reading raw update JSON into python-telegram-bot's `Update`, or saying why it can't be.

python-telegram-bot trusts the Bot API: it takes a string where an id belongs, an id beyond
64 bits or a lone surrogate in a text as they come, and fails on a missing field with a bare
KeyError. Any of those would stop intake or poison the store, so each update is checked here
first and a bad one is refused with a reason that names where it is wrong, never its content.
"""

from __future__ import annotations

import json
from typing import Any

from telegram import Bot, Update

INT64 = 2**63
_INT_FIELDS = frozenset(
    {"update_id", "message_id", "message_thread_id", "date", "edit_date", "user_id"}
)
"""Fields that are integers wherever they appear."""
_PEOPLE_AND_CHATS = frozenset(
    {
        "chat",
        "from",
        "user",
        "sender_chat",
        "via_bot",
        "forward_from",
        "forward_from_chat",
        "left_chat_member",
        "new_chat_members",
        "sender_business_bot",
    }
)
"""Objects whose `id` is an integer (a callback query's or a poll's id is a string)."""
_OBJECT_FIELDS = frozenset(
    {"message", "edited_message", "callback_query", "my_chat_member", "chat", "from"}
)
MAX_DEPTH = 40


class MalformedUpdate(ValueError):
    """The update cannot be read; the message says where, not what it contained."""


def update_id_of(raw: object) -> int | None:
    """The update's id if it has a usable one (for the cursor), even if the rest is bad."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("update_id")
    if isinstance(value, str) and value.isdecimal():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < INT64:
        return value
    return None


def payload_bytes(raw: object) -> bytes:
    """The update as stored in a dead letter: JSON with every non-ASCII character escaped, so
    even a lone surrogate is kept exactly."""
    return json.dumps(raw, ensure_ascii=True, sort_keys=True).encode()


def parse_update(raw: object, bot: Bot) -> Update:
    """`raw` as an `Update`; raises `MalformedUpdate` for anything we could not store."""
    if not isinstance(raw, dict):
        raise MalformedUpdate(f"an update must be a JSON object, not {_kind(raw)}")
    _check(raw, "update", 0)
    try:
        update = Update.de_json(raw, bot)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        detail = f"missing field {error}" if isinstance(error, KeyError) else type(error).__name__
        raise MalformedUpdate(f"python-telegram-bot could not read it: {detail}") from None
    if update is None:
        raise MalformedUpdate("empty update")
    return update


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedUpdate(f"{path}: nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedUpdate(f"{path}: a key is not a string")
            _check_field(key, item, f"{path}.{key}", parent=_name(path))
            _check(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedUpdate(f"{path}: text that is not valid Unicode") from None
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        raise MalformedUpdate(f"{path}: a number beyond 64 bits")


def _check_field(key: str, value: Any, path: str, parent: str) -> None:
    integer = key in _INT_FIELDS or (key == "id" and parent in _PEOPLE_AND_CHATS)
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise MalformedUpdate(f"{path}: must be a number, not {_kind(value)}")
    if key in _OBJECT_FIELDS and not isinstance(value, dict):
        raise MalformedUpdate(f"{path}: must be an object, not {_kind(value)}")


def _name(path: str) -> str:
    """The key an object sits under (`update.message.chat` -> `chat`; list items: the list)."""
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), "null" if value is None else type(value).__name__)
