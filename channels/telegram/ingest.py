"""Getting updates in exactly once: long polling with our own cursor, or a webhook.

Polling does not use python-telegram-bot's Updater, which confirms updates to Telegram before
they are handled (a crash would lose them). Here a batch is handled first, then the last
handled update id is saved, and only then is the next batch requested. Customer messages of a
batch are recorded in one transaction (deduplicated by chat and message id, so a batch replayed
after a crash records nothing twice); everything else goes through the Application's handlers.
Only one worker polls at a time (a lease in the database); the others answer and deliver.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from aiohttp import web
from telegram import Bot, Update
from telegram.error import NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes

from bot.core.backoff import Backoff
from bot.desk.deadletters import set_aside
from bot.store import cursors
from bot.store.audit import AuditLog
from bot.store.db import Database, is_transient
from bot.store.inbox import InboundMessage, Stored, record_inbound_batch
from bot.store.leases import Lease
from bot.store.refusals import Refusals
from channels.host import TakeTurns, no_turns
from channels.telegram.commands import parse_command
from channels.telegram.normalize import CHANNEL, inbound_from_update
from channels.telegram.sending import retry_seconds
from channels.telegram.updates import MalformedUpdate, parse_update, payload_bytes, update_id_of

log = logging.getLogger("channels.telegram")
Context = ContextTypes.DEFAULT_TYPE
CURSOR_KEY = "telegram:last_update_id"
POLLER_LEASE = "telegram:poller"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


def is_admin_command(update: Update, names: Collection[str]) -> bool:
    """An admin command, one of `names` (in any case, `/Agent@Bot` too, as Telegram's clients
    match them); a bot's message never is one."""
    message = update.message
    if message is None or (message.from_user is not None and message.from_user.is_bot):
        return False
    command = parse_command(message.text)
    return command is not None and command.name in names


@dataclass(frozen=True, slots=True)
class Received:
    """An update as it arrived (`raw`, for a dead letter) and as python-telegram-bot read it."""

    raw: object
    update: Update


class UpdateIntake:
    """Routes updates: customer messages to the store, the rest to the Application.

    An update that cannot be read, or whose message the store cannot hold, is set aside as a
    dead letter and the rest of its batch goes on; only a failure of the database itself
    (down, locked) fails the batch, so that it is fetched and handled again.
    """

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        application: Application,  # type: ignore[type-arg]
        notify: Callable[[int], None],
        *,
        admin_commands: Collection[str],
        take_turns: TakeTurns = no_turns,
    ) -> None:
        self.db, self.audit, self.application, self.notify = db, audit, application, notify
        self.take_turns = take_turns
        self.admin_commands = admin_commands
        """Names of the admin commands (`AdminPort.names()`): handlers answer them."""
        self._failed: dict[int, BaseException] = {}
        application.add_error_handler(self._on_handler_error)

    async def _on_handler_error(self, update: object, context: Context) -> None:
        """python-telegram-bot hands a handler's exception here instead of raising it; keep
        it for `_process`, which decides whether the update is retried or set aside."""
        update_id = getattr(update, "update_id", None)
        if isinstance(update_id, int) and context.error is not None:
            self._failed[update_id] = context.error

    async def handle_raw(self, raws: list[object]) -> None:
        """Read and handle raw update JSON in order, setting aside what cannot be read."""
        received: list[Received] = []
        for raw in raws:
            try:
                received.append(Received(raw, parse_update(raw, self.application.bot)))
            except MalformedUpdate as error:
                await self.set_aside(raw, "update_malformed", str(error))
        await self.handle_batch(received)

    async def handle_batch(self, received: list[Received]) -> None:
        """Handle updates in order; raises only if the database failed."""
        pending: list[tuple[Received, InboundMessage]] = []
        for item in received:
            update = item.update
            admin = is_admin_command(update, self.admin_commands)
            inbound = None if admin else inbound_from_update(update)
            if inbound is not None:
                pending.append((item, inbound))
                continue
            await self._record(pending)
            pending = []
            await self._process(item)
        await self._record(pending)

    async def _process(self, item: Received) -> None:
        """Run the update through the handlers. A handler that failed on the database itself
        fails the batch, so it is read and applied again later (its once-marker was rolled
        back with it); any other failure sets the update aside."""
        update_id = item.update.update_id
        try:
            await self.application.process_update(item.update)
        except Exception as raised:
            self._failed[update_id] = raised
        error = self._failed.pop(update_id, None)
        if error is None:
            return
        if is_transient(error):
            raise error
        log.error(
            "update %s: handling failed (%s)", update_id, type(error).__name__, exc_info=error
        )
        await self.set_aside(item.raw, "update_failed", f"{type(error).__name__}: {error}")

    async def _record(self, pending: list[tuple[Received, InboundMessage]]) -> None:
        if not pending:
            return
        try:
            stored = await self._store([inbound for _, inbound in pending])
        except Exception as error:
            if is_transient(error):
                raise
            await self._isolate(pending, error)
            return
        # Once per conversation, in the order their first new message came in.
        for conversation_id in dict.fromkeys(s.conversation_id for s in stored):
            self.notify(conversation_id)

    async def _isolate(
        self, pending: list[tuple[Received, InboundMessage]], error: Exception
    ) -> None:
        """Some message of the batch cannot be stored: store them one at a time, in order, and
        set aside the ones that fail."""
        if len(pending) > 1:
            for one in pending:
                await self._record([one])
            return
        item = pending[0][0]
        log.error(
            "update %s: the store refused it (%s)", item.update.update_id, type(error).__name__
        )
        await self.set_aside(item.raw, "update_unstorable", f"{type(error).__name__}: {error}")

    async def _store(self, inbounds: list[InboundMessage]) -> list[Stored]:
        async with self.db.transaction() as session:
            stored = await record_inbound_batch(session, inbounds)
            await self.take_turns(session, list(dict.fromkeys(s.conversation_id for s in stored)))
            return stored

    async def set_aside(self, raw: object, kind: str, error: str) -> None:
        update_id = update_id_of(raw)
        async with self.db.transaction() as session:
            await set_aside(
                session,
                self.audit,
                source=CHANNEL,
                kind=kind,
                ref=f"update {update_id}" if update_id is not None else None,
                payload=payload_bytes(raw),
                error=error,
            )


class Poller:
    """Long polling with a persisted cursor, backoff on errors, one poller per deployment."""

    def __init__(
        self,
        bot: Bot,
        intake: UpdateIntake,
        db: Database,
        *,
        worker_id: str,
        poll_timeout: int = 25,
        lease_seconds: float = 60,
    ) -> None:
        self.bot, self.intake, self.db = bot, intake, db
        self.worker_id, self.poll_timeout, self.lease_seconds = (
            worker_id,
            poll_timeout,
            lease_seconds,
        )
        self.failures = 0
        self.lease = Lease(db, POLLER_LEASE, worker_id, lease_seconds)
        self.backoff = Backoff(initial=2.0, maximum=60.0)

    async def run(self) -> None:
        await self.lease.run(self._poll_with_backoff)

    async def _poll_with_backoff(self) -> None:
        try:
            await self.poll_once()
            self.failures = 0
        except RetryAfter as error:
            await asyncio.sleep(retry_seconds(error))
        except (TelegramError, OSError) as error:
            self.failures += 1
            delay = self.backoff.delay(self.failures)
            log.warning("getUpdates failed (%s); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)

    async def last_update_id(self) -> int | None:
        async with self.db.transaction() as session:
            value = await cursors.load(session, CURSOR_KEY)
        return int(value) if value else None

    async def poll_once(self) -> int:
        """Fetch one batch after the saved cursor, handle it, save the cursor."""
        last = await self.last_update_id()
        raws = await self._fetch(last)
        fresh = [r for r in raws if not _already_handled(r, last)]
        if not fresh:
            return 0
        # A stop request must not split a batch from its cursor: finish it, then stop.
        work = asyncio.ensure_future(self._handle(fresh))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            await work
            raise
        return len(fresh)

    async def _fetch(self, last: int | None) -> list[object]:
        """The next batch as raw JSON: python-telegram-bot's `get_updates` would fail on one
        unreadable update, losing the whole batch and logging customers' text.

        The method is named in lower case because `Bot` warns about `do_api_request` for a
        method it has; Bot API method names are case-insensitive.
        """
        kwargs: dict[str, object] = {
            "timeout": self.poll_timeout,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if last is not None:
            kwargs["offset"] = last + 1
        raws = await self.bot.do_api_request(
            "getupdates", api_kwargs=kwargs, read_timeout=self.poll_timeout + 10
        )
        if not isinstance(raws, list):
            raise NetworkError(f"getUpdates answered with {type(raws).__name__}, not a list")
        return raws

    async def _handle(self, raws: list[object]) -> None:
        await self.intake.handle_raw(raws)
        ids = [i for i in map(update_id_of, raws) if i is not None]
        if ids:
            async with self.db.transaction() as session:
                await cursors.save(session, CURSOR_KEY, str(max(ids)))


def _already_handled(raw: object, last: int | None) -> bool:
    update_id = update_id_of(raw)
    return last is not None and update_id is not None and update_id <= last


MAX_UPDATE_BYTES = 1024 * 1024
"""The largest webhook body read: an update holds a message of at most 4,096 characters."""


class WebhookServer:
    """Receives updates over HTTPS (behind your proxy); refuses requests without the secret."""

    SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

    def __init__(
        self,
        bot: Bot,
        intake: UpdateIntake,
        audit: AuditLog,
        db: Database,
        refusals: Refusals,
        *,
        secret: str,
        path: str,
        host: str,
        port: int,
    ) -> None:
        self.bot, self.intake, self.audit, self.db = bot, intake, audit, db
        self.refusals = refusals
        self.secret, self.path, self.host, self.port = secret, path or "/", host, port
        self._order = asyncio.Lock()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(self.SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            # Counted and audited once a minute, not per request: anyone can send these.
            detail = {"remote": request.remote or ""}
            await self.refusals.refuse("telegram:webhook", "wrong or missing secret", detail)
            return web.Response(status=403, text="forbidden")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # Telegram's own updates are a few kilobytes; this is someone else's payload.
            reason = f"body is larger than {MAX_UPDATE_BYTES} bytes"
            log.error("webhook: update refused (%s)", reason)
            await self._record("update_malformed", {"error": reason})
            return web.Response(status=413, text=f"malformed update: {reason}")
        try:
            raw = json.loads(body)
            update = parse_update(raw, self.bot)
        except ValueError as error:  # not JSON, or JSON that is not an update we can read
            reason = str(error) if isinstance(error, MalformedUpdate) else "body is not JSON"
            log.error("webhook: malformed update refused (%s)", reason)
            await self._record("update_malformed", {"error": reason[:300]})
            return web.Response(status=400, text=f"malformed update: {reason}")
        async with self._order:
            await self.intake.handle_batch([Received(raw, update)])
        return web.Response(text="ok")

    async def _record(self, kind: str, payload: dict[str, str]) -> None:
        async with self.db.transaction() as session:
            await self.audit.append(session, kind, payload, actor="channel:telegram")

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        app.router.add_post(self.path, self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info("webhook listening on %s:%s%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
