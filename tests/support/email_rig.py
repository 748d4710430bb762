"""The real email channel (aioimaplib, aiosmtplib and all) against Dovecot and aiosmtpd."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from agents import catalog
from agents.definition import TEMPLATES_DIR
from agents.providers.base import Provider
from bot.app.wiring import App, serve
from bot.core.backoff import Backoff
from bot.core.settings import Settings
from bot.store.models import Base, Message, OutboxItem
from channels.email.service import EmailService
from channels.telegram.service import TelegramService
from tests.support.fake_telegram import FakeTelegram
from tests.support.harness import RecordingChannel
from tests.support.mail_servers import OUR_ADDRESS, Dovecot, MailUser, SmtpSink
from tests.support.models import FunctionModel, turn
from tests.support.rows import rows
from tests.support.telegram_rig import ALWAYS_OPEN, STAFF_CHAT

FAST_RETRY = Backoff(initial=0.05, maximum=0.3, max_attempts=40)


def echo_model() -> FunctionModel:
    """Answers every inbound turn with what it was told."""
    return FunctionModel(lambda request: turn(f"You wrote: {request.messages[-1]}"))


class EmailRig:
    """One crmbot process with the email channel, on a database that outlives it.

    Staff posts are recorded by `staff` unless `telegram` is given: then the Telegram channel
    runs too, with its staff group on the fake Bot API, wired as `crmbot run` wires both.
    """

    def __init__(
        self,
        database_url: str,
        dovecot: Dovecot,
        user: MailUser,
        smtp: SmtpSink,
        *,
        worker_id: str = "rig-worker",
        telegram: FakeTelegram | None = None,
        **settings: Any,
    ) -> None:
        self.dovecot, self.user, self.smtp = dovecot, user, smtp
        values: dict[str, Any] = {
            "database_url": database_url,
            "llm_provider": "offline",
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.port,
            "imap_tls": "none",
            "imap_user": user.name,
            "imap_password": user.password,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "email_from": OUR_ADDRESS,
            "email_from_name": "Acme Sales",
            "coalesce_seconds": 0.05,
            "business_hours": ALWAYS_OPEN,
            "default_agent": "lead-qualifying",
            "worker_id": worker_id,
        }
        if not dovecot.idle:
            values["imap_poll_seconds"] = 0.05
        if telegram is not None:
            values |= {
                "telegram_bot_token": telegram.token,
                "telegram_base_url": telegram.base_url,
                "telegram_staff_chat_id": STAFF_CHAT,
            }
        self.settings = Settings(**(values | settings))
        self.app: App | None = None
        self.service: EmailService | None = None
        self.telegram: TelegramService | None = None
        self.staff = RecordingChannel(name="staff")
        self._task: asyncio.Task[None] | None = None

    async def start(self, model: Provider | None = None, *, import_agents: bool = True) -> None:
        self.app = App(self.settings, seed_agents=False)
        self.service = EmailService(self.app, self.settings)
        if self.dovecot.certificate is not None:  # trust the test server's own certificate
            reader = self.service.reader
            reader.config = replace(reader.config, ssl_context=self.dovecot.trust())
        if self.settings.telegram_bot_token:
            self.telegram = TelegramService(self.app, self.settings)
        else:
            self.app.add_channel(self.staff)
        await self.app.start()
        if import_agents:
            async with self.app.db.transaction() as session:
                await catalog.import_paths(session, [TEMPLATES_DIR], keep_existing=True)
        if model is not None:
            self.app.providers.register("offline", model)
        for worker in self.app.outbox_workers.values():
            worker.poll_seconds = 0.05
            worker.retry = FAST_RETRY
        self.app.dispatcher.sweep_seconds = 0.2
        self.service.reader.backoff = Backoff(initial=0.05, maximum=0.3)
        await self.service.start()
        tasks = [self.service.run]
        if self.telegram is not None:
            await self.telegram.start()
            tasks.append(self.telegram.run)
        self._task = asyncio.create_task(serve(self.app, tasks))

    async def stop(self) -> None:
        """A clean stop, as on SIGTERM: runs finish, the outbox flushes, everything closes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.app is not None:
            await self.app.aclose()
        if self.service is not None:
            await self.service.stop()
        if self.telegram is not None:
            await self.telegram.stop()
        self.app = self.service = self.telegram = self._task = None

    def deliver(self, *mails: bytes, mailbox: str | None = None) -> None:
        self.dovecot.deliver(self.user, *mails, mailbox=mailbox or self.settings.imap_mailbox)

    async def rows(self, model: type[Base], *where: Any) -> list[Any]:
        assert self.app is not None
        return await rows(self.app.db, model, *where)

    async def inbound(self) -> list[Message]:
        return await self.rows(Message, Message.direction == "in")

    async def outbox(self) -> list[OutboxItem]:
        return await self.rows(OutboxItem, OutboxItem.channel == "email")
