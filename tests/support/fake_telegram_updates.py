"""What a FakeTelegram knows (users, chats, topics, messages, files) and the updates it serves.

The builders produce update JSON shaped like https://core.telegram.org/bots/api#update, so the
real python-telegram-bot parses it into the objects it would build from Telegram's own.
Message ids count per chat and are shared by both directions, as in a real chat; a forum topic's
thread id is the id of the service message that created it, as in Telegram.
"""

from __future__ import annotations

import itertools
import mimetypes
import time
from typing import Any

JSON = dict[str, Any]

DEFAULT_TOPIC_COLOR = 0x6FB9F0
GENERAL_TOPIC = 1
"""The thread id of a forum's General topic, which always exists."""

_ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_pin_messages",
    "can_manage_topics",
)
_MEMBER_RIGHTS = (
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_send_messages",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_manage_topics",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_edit_tag",
    "can_react_to_messages",
)


def now() -> int:
    return int(time.time())


def command_entities(text: str | None) -> list[JSON]:
    """The bot_command entity Telegram adds to a text that starts with /command."""
    if not text or not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]


def chat_member(user: JSON, status: str) -> JSON:
    """A ChatMember of the given status with every field python-telegram-bot requires."""
    member: JSON = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(dict.fromkeys(_ADMIN_RIGHTS, True), can_be_edited=False, is_anonymous=False)
    elif status == "restricted":
        member.update(dict.fromkeys(_MEMBER_RIGHTS, False), is_member=True, until_date=0)
    elif status == "kicked":
        member["until_date"] = 0
    return member


class TelegramWorld:
    """The users, chats, topics, messages and files the fake knows, and its pending updates."""

    def __init__(self, bot_user: JSON) -> None:
        self.bot_user = bot_user
        self.users: dict[int, JSON] = {bot_user["id"]: bot_user}
        self.chats: dict[int, JSON] = {}
        self.topics: dict[int, dict[int, JSON]] = {}
        """Forum supergroup id -> thread id -> ForumTopic; a chat is a forum if it is a key."""
        self.deleted_topics: set[tuple[int, int]] = set()
        self.blocked: set[int] = set()
        self.members: dict[tuple[int, int], str] = {}
        """(chat id, user id) -> status that getChatMember reports; "left" when absent."""
        self.messages: dict[tuple[int, int], JSON] = {}
        self.files: dict[str, tuple[JSON, bytes]] = {}
        self.callback_queries: set[str] = set()
        """Ids of callback queries not yet answered."""
        self.pending: list[JSON] = []
        """Updates not yet confirmed by a getUpdates offset, oldest first."""
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._update_ids = itertools.count(100_001)
        self._ids = itertools.count(1)

    # Registry

    def add_supergroup(self, chat_id: int, title: str, *, is_forum: bool = True) -> JSON:
        chat: JSON = {"id": chat_id, "type": "supergroup", "title": title}
        # Message 1 created the group; in a forum its thread is the General topic.
        self._message_ids.setdefault(chat_id, itertools.count(GENERAL_TOPIC + 1))
        if is_forum:
            chat["is_forum"] = True
            self.topics.setdefault(chat_id, {})
        self.chats[chat_id] = chat
        return chat

    def add_topic(
        self, chat_id: int, name: str, *, icon_color: int = DEFAULT_TOPIC_COLOR, **extra: Any
    ) -> JSON:
        """Create a topic in a forum supergroup (as createForumTopic does); returns ForumTopic."""
        service = self.new_message(chat_id, self.bot_user)
        topic: JSON = {"message_thread_id": service["message_id"], "name": name}
        topic |= {"icon_color": icon_color, **extra}
        service["message_thread_id"] = topic["message_thread_id"]
        service["forum_topic_created"] = {"name": name, "icon_color": icon_color}
        self.store(service)
        self.topics.setdefault(chat_id, {})[topic["message_thread_id"]] = topic
        return topic

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Delete a topic: from now on sending into it fails with "message thread not found"."""
        self.topics.get(chat_id, {}).pop(thread_id, None)
        self.deleted_topics.add((chat_id, thread_id))

    def set_blocked(self, chat_id: int, blocked: bool = True) -> None:
        """Make the user block (or unblock) the bot: sends to the chat fail with 403."""
        (self.blocked.add if blocked else self.blocked.discard)(chat_id)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember reports: creator, administrator, member, restricted, left, kicked."""
        self.members[(chat_id, user_id)] = status

    def add_file(self, content: bytes, *, file_name: str = "file.bin") -> JSON:
        """Store a downloadable file; returns its File object (file_id, file_path, ...)."""
        number = next(self._ids)
        file: JSON = {
            "file_id": f"FILE{number:06d}",
            "file_unique_id": f"U{number:06d}",
            "file_size": len(content),
            "file_path": f"documents/file_{number}_{file_name}",
        }
        self.files[file["file_id"]] = (file, content)
        return file

    def chat(self, chat_id: int) -> JSON:
        """The known chat, or one made up from the id's sign (private if positive)."""
        if chat_id not in self.chats:
            if chat_id > 0:
                user = self.user(chat_id)
                self.chats[chat_id] = {"id": chat_id, "type": "private"} | _names(user)
            else:
                self.chats[chat_id] = {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
        return self.chats[chat_id]

    def user(self, user_id: int) -> JSON:
        return self.users.setdefault(
            user_id, {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        )

    def new_message(self, chat_id: int, sender: JSON, thread_id: int | None = None) -> JSON:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        message: JSON = {
            "message_id": next(counter),
            "date": now(),
            "chat": dict(self.chat(chat_id)),
            "from": dict(sender),
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            if self.chat(chat_id).get("is_forum"):
                message["is_topic_message"] = True
        return message

    def store(self, message: JSON) -> JSON:
        self.messages[(message["chat"]["id"], message["message_id"])] = message
        return message

    # Updates

    def push_update(self, update: JSON) -> JSON:
        """Queue an update for getUpdates (numbering it if it has no update_id); returns it."""
        update.setdefault("update_id", next(self._update_ids))
        for kind in ("message", "edited_message", "channel_post"):
            if kind in update:
                self.store(update[kind])
        self.pending.append(update)
        self._updates_changed()
        return update

    def _updates_changed(self) -> None:
        """Called whenever the pending updates change; the server wakes long polls here."""

    def user_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
        language_code: str | None = None,
        chat_id: int | None = None,
        chat_type: str | None = None,
        chat_title: str | None = None,
        message_thread_id: int | None = None,
        reply_to_message: JSON | int | None = None,
        caption: str | None = None,
        photo: bytes | None = None,
        document: tuple[str, bytes] | None = None,
        contact: str | None = None,
    ) -> JSON:
        """A message from a user, in a private chat unless `chat_id` names a group.

        `photo` and `document` (file name, content) become downloadable files; `contact` is
        the sender's own phone number; a leading /command gets its bot_command entity.
        """
        sender = self._remember_user(user_id, first_name, last_name, username, is_bot)
        if language_code is not None:
            sender["language_code"] = language_code
        chat = self._chat_for(sender, chat_id, chat_type, chat_title)
        message = self.new_message(chat["id"], sender, message_thread_id)
        message |= _text_fields("text", text) | _text_fields("caption", caption)
        if photo is not None:
            message["photo"] = self._photo_sizes(photo)
        if document is not None:
            message["document"] = self._document(*document)
        if contact is not None:
            message["contact"] = {"phone_number": contact, "user_id": user_id} | _names(sender)
        if reply_to_message is not None:
            message["reply_to_message"] = self._message(chat["id"], reply_to_message)
        return self.push_update({"message": message})

    def edited_message(self, message: JSON, text: str) -> JSON:
        """The user edits an earlier message (a dict from `update["message"]`)."""
        edited = {k: v for k, v in message.items() if k != "entities"}
        edited |= _text_fields("text", text) | {"edit_date": now()}
        return self.push_update({"edited_message": edited})

    def callback_query(
        self, user_id: int, message: JSON | int, data: str, *, chat_id: int | None = None
    ) -> JSON:
        """The user presses an inline button on `message` (a dict, or its id in `chat_id`)."""
        original = self._message(user_id if chat_id is None else chat_id, message)
        query_id = str(4_000_000_000 + next(self._ids))
        self.callback_queries.add(query_id)
        query: JSON = {
            "id": query_id,
            "from": self.user(user_id),
            "chat_instance": str(abs(original["chat"]["id"]) * 7919),
            "message": original,
            "data": data,
        }
        return self.push_update({"callback_query": query})

    def my_chat_member(
        self,
        chat_id: int,
        new_status: str,
        *,
        old_status: str | None = None,
        by_user_id: int | None = None,
    ) -> JSON:
        """The bot's own membership changes; in a private chat "kicked" means blocked."""
        if old_status is None:
            old_status = "member" if new_status in ("left", "kicked") else "left"
        chat = self.chat(chat_id)
        if chat["type"] == "private":
            self.set_blocked(chat_id, new_status == "kicked")
        actor = self.user(chat_id if by_user_id is None else by_user_id)
        change: JSON = {
            "chat": chat,
            "from": actor,
            "date": now(),
            "old_chat_member": chat_member(self.bot_user, old_status),
            "new_chat_member": chat_member(self.bot_user, new_status),
        }
        return self.push_update({"my_chat_member": change})

    def _remember_user(
        self,
        user_id: int,
        first_name: str | None,
        last_name: str | None,
        username: str | None,
        is_bot: bool,
    ) -> JSON:
        user = self.user(user_id)
        user["is_bot"] = is_bot
        fields = {"first_name": first_name, "last_name": last_name, "username": username}
        user.update({key: value for key, value in fields.items() if value is not None})
        return user

    def _chat_for(
        self, sender: JSON, chat_id: int | None, chat_type: str | None, chat_title: str | None
    ) -> JSON:
        if chat_id is None or chat_id == sender["id"]:
            chat = {"id": sender["id"], "type": "private"} | _names(sender)
            self.chats[sender["id"]] = chat
            return chat
        if chat_id not in self.chats:
            kind = chat_type or ("supergroup" if chat_id < -(10**12) else "group")
            title = chat_title or f"Group {chat_id}"
            self.chats[chat_id] = {"id": chat_id, "type": kind, "title": title}
        return self.chats[chat_id]

    def _message(self, chat_id: int, message: JSON | int) -> JSON:
        if isinstance(message, dict):
            return message
        try:
            return self.messages[(chat_id, message)]
        except KeyError:
            raise ValueError(f"no message {message} in chat {chat_id}") from None

    def _photo_sizes(self, content: bytes) -> list[JSON]:
        small = self.add_file(content, file_name="photo_s.jpg")
        large = self.add_file(content, file_name="photo.jpg")
        return [
            {**_file_ids(small), "width": 90, "height": 67, "file_size": len(content)},
            {**_file_ids(large), "width": 800, "height": 600, "file_size": len(content)},
        ]

    def _document(self, file_name: str, content: bytes) -> JSON:
        mime_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        return _file_ids(self.add_file(content, file_name=file_name)) | {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(content),
        }


def _names(user: JSON) -> JSON:
    return {key: user[key] for key in ("first_name", "last_name", "username") if key in user}


def _file_ids(file: JSON) -> JSON:
    return {"file_id": file["file_id"], "file_unique_id": file["file_unique_id"]}


def _text_fields(name: str, text: str | None) -> JSON:
    if text is None:
        return {}
    fields: JSON = {name: text}
    if entities := command_entities(text):
        fields["entities" if name == "text" else "caption_entities"] = entities
    return fields
