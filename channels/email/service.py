"""The email channel assembled: outbound channel, mailbox reader, lifecycle."""

from __future__ import annotations

import logging

from bot.core.backoff import Backoff
from bot.core.settings import Settings
from bot.desk.deadletters import Retrier
from bot.store.models import DeadLetter
from channels.email.compose import Sender
from channels.email.imap import MailboxConfig, MailboxReader
from channels.email.intake import EmailIntake, from_position_ref
from channels.email.loops import CHANNEL, AutoReplyCap
from channels.email.outbound import EmailChannel
from channels.email.smtp import SmtpConfig, SmtpTransport
from channels.host import Host

log = logging.getLogger("channels.email")
EMAIL_RETRY = Backoff(initial=10.0, maximum=900.0, max_attempts=25)
"""An SMTP server that is down delays replies for hours (about five) before they fail."""


def mailbox_config(settings: Settings) -> MailboxConfig:
    assert settings.imap_host and settings.imap_user and settings.imap_password
    assert settings.imap_port is not None
    return MailboxConfig(
        host=settings.imap_host,
        port=settings.imap_port,
        user=settings.imap_user,
        password=settings.imap_password.get_secret_value(),
        tls=settings.imap_tls == "implicit",
        mailbox=settings.imap_mailbox,
        idle_seconds=settings.imap_idle_seconds,
        poll_seconds=settings.imap_poll_seconds,
    )


def smtp_config(settings: Settings) -> SmtpConfig:
    assert settings.smtp_host and settings.smtp_port is not None and settings.email_from
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        local_hostname=settings.email_from.rpartition("@")[2],
    )


def own_addresses(settings: Settings) -> frozenset[str]:
    """Addresses whose mail is ours: never recorded, never answered."""
    found = {settings.email_from or ""}
    if settings.imap_user and "@" in settings.imap_user:
        found.add(settings.imap_user)
    return frozenset(a.strip().lower() for a in found if a)


class EmailService:
    """Runs the email channel inside a host (like `TelegramService`)."""

    def __init__(self, app: Host, settings: Settings) -> None:
        assert settings.email_enabled and settings.email_from
        self.app, self.settings = app, settings
        self.mailbox = mailbox_config(settings)
        self.smtp = smtp_config(settings)
        self.sender = Sender(settings.email_from, settings.email_from_name)
        self.channel = EmailChannel(
            app.db,
            SmtpTransport(self.smtp),
            self.sender,
            AutoReplyCap(settings.email_autoreply_cap_per_hour),
        )
        app.add_channel(self.channel, retry=EMAIL_RETRY)
        self.intake = EmailIntake(app.audit, own_addresses(settings))
        self.reader = MailboxReader(
            self.mailbox,
            app.db,
            self.intake.handle,
            app.notify,
            worker_id=settings.worker_id,
            unreadable=self.intake.set_aside,
            lease_seconds=settings.lease_seconds,
            take_turns=app.take_turns,
        )
        retrier = Retrier(app.db, CHANNEL, self._retry)
        app.add_background("email-dead-letters", retrier.run_forever)

    async def start(self) -> None:
        if not self.mailbox.tls:
            log.warning("IMAP_TLS=none: mail is read unencrypted (trusted networks only)")
        if self.smtp.tls == "none":
            log.warning("SMTP_TLS=none: mail is sent unencrypted (trusted networks only)")
        log.info(
            "email channel started: reading %s, sending as %s via %s:%s",
            self.mailbox.address,
            self.sender.address,
            self.smtp.host,
            self.smtp.port,
        )

    async def run(self) -> None:
        """Read the mailbox until cancelled."""
        await self.reader.run()

    async def _retry(self, letter: DeadLetter) -> None:
        await self.reader.feed(from_position_ref(letter.ref or "", letter.payload))

    async def stop(self) -> None:
        """Nothing to close: `run` drops its connection and lease when it is cancelled."""
