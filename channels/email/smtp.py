"""Sending one message over SMTP (aiosmtplib) and classifying every failure for the outbox.

- A refused or dropped connection, a timeout, or a 4xx reply before the server accepted the
  message: not sent, retry with backoff.
- A 5xx reply to MAIL, RCPT or DATA: refused for good. A 5xx to RCPT about the mailbox
  itself (550/551/553, or an enhanced status 5.1.x) also marks the contact unreachable.
- The connection lost or timed out after the message data went out, before the server's
  final reply: the outcome is unknown, and the message is never resent blindly.
- A refused login (and TLS trouble) is our configuration, not the message's fault: retried,
  and logged as an error so that someone fixes the settings.

One connection per message: replies are few and far between, and a fresh session cannot
inherit a half-broken one.
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from channels.base import DeliveryResult, Failed, RetryLater, Sent, Unknown

log = logging.getLogger("channels.email")
SmtpTls = Literal["implicit", "starttls", "none"]
_MAILBOX_STATUS = re.compile(r"\b5\.1\.\d+\b")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """How to reach the SMTP server."""

    host: str
    port: int
    tls: SmtpTls = "implicit"
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    """Name given in EHLO; None: this machine's fully qualified name."""
    tls_context: ssl.SSLContext | None = None
    """Trust anchors for the server's certificate; None: the system's."""


class SmtpTransport:
    """Sends raw messages; `send` returns a classified result and never raises."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def _client(self) -> aiosmtplib.SMTP:
        c = self.config
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == "implicit",
            start_tls=c.tls == "starttls",
            timeout=c.timeout,
            local_hostname=c.local_hostname,
            tls_context=c.tls_context,
        )

    async def send(self, sender: str, recipient: str, data: bytes) -> DeliveryResult:
        client = self._client()
        stage = "connect"
        try:
            await client.connect()
            if self.config.user:
                stage = "login"
                await client.login(self.config.user, self.config.password or "")
            stage = "mail"
            await client.mail(sender)
            stage = "rcpt"
            await client.rcpt(recipient)
            stage = "data"
            await client.data(data)
        except SMTPAuthenticationError as error:
            log.error("SMTP login refused (check SMTP_USER and SMTP_PASSWORD): %s", error)
            return RetryLater(f"SMTP login refused: {error.code} {error.message}")
        except SMTPResponseException as error:
            return classify_reply(error, stage)
        except (SMTPServerDisconnected, SMTPTimeoutError) as error:
            if stage == "data":
                return Unknown(f"connection lost while the server took the message: {error}")
            return _not_sent(error, stage)
        except (SMTPException, OSError) as error:
            return _not_sent(error, stage)
        finally:
            await _close(client)
        return Sent(None)


def classify_reply(error: SMTPResponseException, stage: str) -> DeliveryResult:
    """What the outbox should do after the server answered `error.code` at `stage`."""
    detail = f"SMTP {stage}: {error.code} {error.message}"[:500]
    if 400 <= error.code < 500 or stage in ("connect", "login"):
        # A refusal before MAIL is about our session or settings, not this message.
        return RetryLater(detail)
    mailbox = isinstance(error, SMTPRecipientRefused) and (
        error.code in (550, 551, 553) or bool(_MAILBOX_STATUS.search(error.message))
    )
    return Failed(detail, unreachable=mailbox)


def _not_sent(error: Exception, stage: str) -> RetryLater:
    if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
        log.error("TLS with the SMTP server failed (check SMTP_TLS and SMTP_PORT): %s", error)
        return RetryLater(f"TLS failed: {error}")
    return RetryLater(f"SMTP {stage}: {type(error).__name__}: {error}")


async def _close(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=5)
    except (SMTPException, OSError):
        client.close()
