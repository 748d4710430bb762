"""A fake Telegram Bot API on loopback that the real python-telegram-bot talks to.

Point a `Bot` or `Application` at `fake.base_url` (and `fake.base_file_url`); the whole
adapter then runs for real: request encoding, long polling, response parsing, error classes.

On the wire (python-telegram-bot 22 with httpx): every call is a POST to
`{base_url}{token}/{method}` with an `application/x-www-form-urlencoded` body (multipart when a
file is uploaded). Each field is a string: str parameters go as they are, everything else
(ints, bools, lists, dicts such as reply_markup or reply_parameters) as JSON. None values are
left out. Answers are `{"ok": true, "result": ...}`, or `{"ok": false, "error_code": N,
"description": ..., "parameters": {"retry_after": N}}` with N also as the HTTP status, which
python-telegram-bot turns into its exceptions (429 with retry_after -> RetryAfter, 403 ->
Forbidden, 400 -> BadRequest, 409 -> Conflict, 401/404 -> InvalidToken, others ->
NetworkError). The fake also accepts JSON bodies and GET query strings, as Telegram does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from aiohttp import web

from tests.support.fake_telegram_methods import BLOCKED, ApiError, BotApi, as_int
from tests.support.fake_telegram_updates import JSON

TOKEN = "123456789:AAHfakeTokenForTests_0123456789abcdef"
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    403: BLOCKED,
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
_STRING_PARAMS = frozenset(
    {"text", "caption", "parse_mode", "name", "url", "secret_token", "callback_query_id"}
    | {"action", "icon_custom_emoji_id", "language_code", "ip_address", "inline_message_id"}
    | {"business_connection_id", "message_effect_id", "file_id", "description", "title"}
)
_UNLISTED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


@dataclass
class Call:
    """One Bot API request as the fake received it."""

    method: str
    params: JSON
    at: float
    """`time.monotonic()` when the request arrived, to measure send rates."""
    status: int | None = None
    """The HTTP status of the answer; None while the request is still being served."""


class FakeTelegram(BotApi):
    """The Bot API for one bot, served on 127.0.0.1 on a free port.

    Use `async with FakeTelegram() as fake:` (or `start()`/`stop()`), then build the bot with
    `base_url=fake.base_url`. Inject updates with the builders (`user_message`, ...), script
    failures with `fail_next`/`delay_next`, and read back `calls` or `sent()`.
    """

    def __init__(
        self,
        token: str = TOKEN,
        *,
        username: str = "crm_test_bot",
        first_name: str = "CRM Test Bot",
    ) -> None:
        bot_id = int(token.split(":", 1)[0])
        super().__init__({"id": bot_id, "is_bot": True, "first_name": first_name})
        self.bot_user["username"] = username
        self.token = token
        self.calls: list[Call] = []
        self.allowed_updates: list[str] | None = None
        self.base_url = ""
        self.base_file_url = ""
        self._faults: dict[str, deque[ApiError]] = {}
        self._delays: dict[str, deque[float]] = {}
        self._resets: dict[str, deque[bool]] = {}
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._poller = 0
        self._runner: web.AppRunner | None = None
        self.methods["getupdates"] = self._get_updates

    # Lifecycle

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._serve)
        app.router.add_get("/file/bot{token}/{path:.+}", self._serve_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/bot"
        self.base_file_url = f"http://{host}:{port}/file/bot"

    async def stop(self) -> None:
        """Stop listening; idempotent. Long polls and delayed answers end at once."""
        self._closing.set()
        self._updates_changed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Reading back what the bot did

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent(self, chat_id: int | None = None, thread_id: int | None = None) -> list[JSON]:
        """Parameters of the sendMessage and copyMessage calls that succeeded, oldest first."""
        return [
            call.params
            for call in self.calls
            if call.method.lower() in ("sendmessage", "copymessage")
            and call.status == 200
            and (chat_id is None or as_int(call.params.get("chat_id")) == chat_id)
            and (thread_id is None or as_int(call.params.get("message_thread_id")) == thread_id)
        ]

    def documents(self, chat_id: int | None = None) -> list[JSON]:
        """Parameters of the sendDocument calls that succeeded, oldest first; an uploaded
        file is `{"filename": ..., "content": bytes}` under `document`."""
        return [
            call.params
            for call in self.calls
            if call.method.lower() == "senddocument"
            and call.status == 200
            and (chat_id is None or as_int(call.params.get("chat_id")) == chat_id)
        ]

    def bot_messages(self, chat_id: int) -> list[JSON]:
        """The Message objects the bot has in `chat_id` (as last edited), oldest first."""
        return [
            message
            for (chat, _), message in sorted(self.messages.items())
            if chat == chat_id and message["from"]["id"] == self.bot_user["id"]
        ]

    # Scripting failures

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error instead of acting on them."""
        if description is None:
            default = f"Too Many Requests: retry after {retry_after}" if status == 429 else None
            description = default or _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")
        error = ApiError(status, description, retry_after)
        self._faults.setdefault(method.lower(), deque()).extend([error] * times)

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Act on the next `times` calls of `method`, then hold the answer back for `seconds`.

        The classic "sent, but the reply was lost" case: the client times out, yet the
        message was delivered and shows up in `sent()`.
        """
        self._delays.setdefault(method.lower(), deque()).extend([seconds] * times)

    def reset_next(self, method: str, *, after_acting: bool, times: int = 1) -> None:
        """Cut the TCP connection of the next `times` calls of `method` with no answer.

        `after_acting`: the server acted first (the message was delivered, then the connection
        dropped); otherwise it cut the connection as soon as the request was read. The client
        cannot tell the two apart, which is why a send cut this way is never resent.
        """
        self._resets.setdefault(method.lower(), deque()).extend([after_acting] * times)

    # Webhook mode

    async def webhook_post(self, url: str, update: JSON, secret: str | None = None) -> int:
        """POST `update` to a webhook as Telegram does; returns the HTTP status.

        A 2xx answer takes the update off the pending queue, as delivery does in Telegram.
        """
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=update, headers=headers) as response,
        ):
            status = response.status
        if 200 <= status < 300 and update in self.pending:
            self.pending.remove(update)
        return status

    # HTTP

    def _updates_changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _serve(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = Call(method, await _read_params(request), time.monotonic())
        self.calls.append(call)
        if (resets := self._resets.get(method.lower())) and not resets[0]:
            resets.popleft()
            _cut(request)
        try:
            result = await self._dispatch(request.match_info["token"], method, call.params)
        except ApiError as error:
            call.status, body = error.status, error.body()
        else:
            call.status, body = 200, {"ok": True, "result": result}
        if (resets := self._resets.get(method.lower())) and resets[0]:
            resets.popleft()
            _cut(request)
        if delays := self._delays.get(method.lower()):
            await self._sleep(delays.popleft())
        return web.json_response(body, status=call.status)

    async def _dispatch(self, token: str, method: str, params: JSON) -> Any:
        if token != self.token:
            raise ApiError(401, "Unauthorized")
        handler = self.methods.get(method.lower())
        if handler is None:
            raise ApiError(404, "Not Found")
        if faults := self._faults.get(method.lower()):
            raise faults.popleft()
        return await handler(params)

    async def _serve_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if request.match_info["token"] == self.token:
            for file, content in self.files.values():
                if file["file_path"] == path:
                    return web.Response(body=content)
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # Long polling

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook.url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        self._poller += 1
        poller = self._poller
        self._updates_changed()  # a newer getUpdates ends an older one, as in Telegram
        self._confirm(as_int(params.get("offset")) or 0)
        if params.get("allowed_updates") is not None:
            self.allowed_updates = params["allowed_updates"]
        limit = min(max(as_int(params.get("limit")) or 100, 1), 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            if poller != self._poller:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            batch = self._deliverable()[:limit]
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or self._closing.is_set():
                return batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            self.pending = self.pending[offset:]
        elif offset > 0:
            self.pending = [u for u in self.pending if u["update_id"] >= offset]

    def _deliverable(self) -> list[JSON]:
        """Pending updates of the allowed types; Telegram never keeps the others."""

        def allowed(update: JSON) -> bool:
            kind = next(key for key in update if key != "update_id")
            if self.allowed_updates:
                return kind in self.allowed_updates
            return kind not in _UNLISTED_BY_DEFAULT

        self.pending = [update for update in self.pending if allowed(update)]
        return self.pending


def _cut(request: web.Request) -> NoReturn:
    """Drop the connection at once (a reset, not a clean close) and answer nothing."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise ConnectionResetError("the fake cut the connection")


async def _read_params(request: web.Request) -> JSON:
    params: JSON = {key: _decode(key, value) for key, value in request.query.items()}
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        params.update(await request.json())
        return params
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            params[key] = {"filename": value.filename, "content": value.file.read()}
        else:
            params[key] = _decode(key, value if isinstance(value, str) else value.decode())
    return params


def _decode(name: str, raw: str) -> Any:
    """A form field as python-telegram-bot meant it: str parameters raw, the rest JSON."""
    if name in _STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw
