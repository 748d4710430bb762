"""The Telegram channel assembled: Application, intake, outbound channels, typing, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlparse

from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder

from bot.core.settings import Settings
from bot.desk.deadletters import Retrier
from bot.store.contacts import address_on
from bot.store.conversations import get_conversation
from bot.store.models import DeadLetter
from channels.host import Host
from channels.telegram.handlers import TelegramHandlers, menu
from channels.telegram.ingest import ALLOWED_UPDATES, Poller, UpdateIntake, WebhookServer
from channels.telegram.normalize import CHANNEL
from channels.telegram.outbound import CustomerChannel, StaffChannel
from channels.telegram.pacing import Pacing

log = logging.getLogger("channels.telegram")
TYPING_EVERY_SECONDS = 4.5  # Telegram shows "typing" for about five seconds per action
TYPING_AFTER_SECONDS = 1.0
POLL_TIMEOUT = 25


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg]
    """python-telegram-bot's Application without its Updater: intake is ours."""
    assert settings.telegram_bot_token is not None
    builder: ApplicationBuilder = (  # type: ignore[type-arg]
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .updater(None)  # the Poller reads getUpdates itself, with its own read timeout
    )
    if settings.telegram_base_url:
        base = settings.telegram_base_url.rstrip("/")
        builder = builder.base_url(base).base_file_url(base.replace("/bot", "/file/bot"))
    return builder.build()


class TelegramService:
    """Runs the Telegram channel inside a host (the app)."""

    def __init__(self, app: Host, settings: Settings) -> None:
        assert settings.telegram_staff_chat_id is not None
        self.app, self.settings = app, settings
        self.application = build_application(settings)
        bot = self.application.bot
        pacing = Pacing(overall_per_second=settings.telegram_max_messages_per_second)
        app.add_channel(CustomerChannel(bot, pacing))
        app.add_channel(StaffChannel(bot, pacing, app.db, settings.telegram_staff_chat_id))
        app.add_activity(self.typing)
        TelegramHandlers(
            app,
            app.admins,
            staff_chat_id=settings.telegram_staff_chat_id,
            admin_ids=set(settings.telegram_admin_ids),
        ).install(self.application)
        self.intake = UpdateIntake(
            app.db,
            app.audit,
            self.application,
            app.notify,
            admin_commands=app.admins.names(),
            take_turns=app.take_turns,
        )
        retrier = Retrier(app.db, CHANNEL, self._retry)
        app.add_background("telegram-dead-letters", retrier.run_forever)
        self.webhook: WebhookServer | None = None

    async def start(self) -> None:
        await self.application.initialize()
        await self.application.start()
        bot = self.application.bot
        await bot.set_my_commands(menu(self.app.admins))
        url = self.settings.telegram_webhook_url
        if url:
            secret = self.settings.telegram_webhook_secret
            assert secret is not None
            self.webhook = WebhookServer(
                bot,
                self.intake,
                self.app.audit,
                self.app.db,
                self.app.refusals,
                secret=secret.get_secret_value(),
                path=urlparse(url).path,
                host=self.settings.telegram_webhook_listen,
                port=self.settings.telegram_webhook_port,
            )
            await self.webhook.start()
            await bot.set_webhook(
                url,
                secret_token=secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
            )
        else:
            await bot.delete_webhook(drop_pending_updates=False)
        log.info(
            "telegram channel started as @%s (%s)",
            bot.username,
            "webhook" if url else "long polling",
        )

    async def run(self) -> None:
        """Receive updates until cancelled."""
        if self.webhook is not None:
            await asyncio.Event().wait()  # the webhook server runs on its own
        poller = Poller(
            self.application.bot,
            self.intake,
            self.app.db,
            worker_id=self.settings.worker_id,
            poll_timeout=POLL_TIMEOUT,
            lease_seconds=self.settings.lease_seconds,
        )
        await poller.run()

    async def _retry(self, letter: DeadLetter) -> None:
        await self.intake.handle_raw([json.loads(letter.payload)])

    async def stop(self) -> None:
        if self.webhook is not None:
            await self.webhook.stop()
        with contextlib.suppress(RuntimeError):
            await self.application.stop()
        await self.application.shutdown()

    @contextlib.asynccontextmanager
    async def typing(self, conversation_id: int) -> AsyncIterator[None]:
        """Show "typing" in the customer's chat while a run works on their conversation."""
        task = asyncio.create_task(self._keep_typing(conversation_id))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_typing(self, conversation_id: int) -> None:
        # A reply that comes within a moment needs no "typing", nor the read of where to show
        # it; under a backlog, showing it for every queued run would cost as many requests as
        # the replies themselves.
        await asyncio.sleep(TYPING_AFTER_SECONDS)
        try:
            async with self.app.db.reading() as session:
                conversation = await get_conversation(session, conversation_id)
                if conversation.channel != CHANNEL:
                    return
                chat = await address_on(session, conversation.contact_id, CHANNEL)
        except Exception:  # "typing" is a courtesy: the run it shows must not hear of it
            log.warning("conversation %s: no typing indicator", conversation_id, exc_info=True)
            return
        if chat is None:
            return
        while True:
            with contextlib.suppress(TelegramError):
                await self.application.bot.send_chat_action(int(chat), ChatAction.TYPING)
            await asyncio.sleep(TYPING_EVERY_SECONDS)
