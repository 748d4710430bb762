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
from collections.abc import Callable

from aiohttp import web
from telegram import Bot, Update
from telegram.error import RetryAfter, TelegramError
from telegram.ext import Application

from bot.audit import AuditLog
from bot.delivery import RetryPolicy
from bot.store import cursors
from bot.store.db import Database
from bot.store.inbox import InboundMessage, record_inbound_batch
from bot.store.leases import Lease
from channels.telegram.normalize import inbound_from_update
from channels.telegram.sending import retry_seconds

log = logging.getLogger("channels.telegram")
CURSOR_KEY = "telegram:last_update_id"
POLLER_LEASE = "telegram:poller"
ADMIN_COMMANDS = ("/agent", "/audit")
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]


def is_admin_command(update: Update) -> bool:
    message = update.message
    text = (message.text or "") if message else ""
    return any(text == c or text.startswith((c + " ", c + "@")) for c in ADMIN_COMMANDS)


class UpdateIntake:
    """Routes updates: customer messages to the store, the rest to the Application."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        application: Application,  # type: ignore[type-arg]
        notify: Callable[[int], None],
    ) -> None:
        self.db, self.audit, self.application, self.notify = db, audit, application, notify

    async def handle_batch(self, updates: list[Update]) -> None:
        """Handle updates in order; raises if customer messages could not be stored."""
        pending: list[InboundMessage] = []
        for update in updates:
            inbound = None if is_admin_command(update) else inbound_from_update(update)
            if inbound is not None:
                pending.append(inbound)
                continue
            await self._record(pending)
            pending = []
            await self.application.process_update(update)
        await self._record(pending)

    async def _record(self, inbounds: list[InboundMessage]) -> None:
        if not inbounds:
            return
        async with self.db.transaction() as session:
            stored = await record_inbound_batch(session, inbounds)
        # Once per conversation, in the order their first new message came in.
        for conversation_id in dict.fromkeys(s.conversation_id for s in stored):
            self.notify(conversation_id)


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
        self.backoff = RetryPolicy(initial=2.0, maximum=60.0)

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
        updates = await self.bot.get_updates(
            offset=last + 1 if last is not None else None,
            timeout=self.poll_timeout,
            allowed_updates=ALLOWED_UPDATES,
        )
        fresh = [u for u in updates if last is None or u.update_id > last]
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

    async def _handle(self, updates: list[Update]) -> None:
        await self.intake.handle_batch(updates)
        async with self.db.transaction() as session:
            await cursors.save(session, CURSOR_KEY, str(updates[-1].update_id))


class WebhookServer:
    """Receives updates over HTTPS (behind your proxy); refuses requests without the secret."""

    SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

    def __init__(
        self,
        bot: Bot,
        intake: UpdateIntake,
        audit: AuditLog,
        db: Database,
        *,
        secret: str,
        path: str,
        host: str,
        port: int,
    ) -> None:
        self.bot, self.intake, self.audit, self.db = bot, intake, audit, db
        self.secret, self.path, self.host, self.port = secret, path or "/", host, port
        self._order = asyncio.Lock()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(self.SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("webhook request from %s refused: wrong or missing secret", request.remote)
            await self._record("webhook_refused", {"remote": request.remote or ""})
            return web.Response(status=403, text="forbidden")
        try:
            update = Update.de_json(json.loads(await request.read()), self.bot)
        except (ValueError, TypeError, KeyError) as error:
            log.error("webhook: malformed update refused: %s", error)
            await self._record("update_malformed", {"error": str(error)[:300]})
            return web.Response(status=400, text="malformed update")
        async with self._order:
            await self.intake.handle_batch([update])
        return web.Response(text="ok")

    async def _record(self, kind: str, payload: dict[str, str]) -> None:
        async with self.db.transaction() as session:
            await self.audit.append(session, kind, payload, actor="channel:telegram")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        log.info("webhook listening on %s:%s%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
