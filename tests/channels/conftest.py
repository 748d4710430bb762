from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.email_rig import EmailRig, echo_model
from tests.support.fake_telegram import FakeTelegram
from tests.support.mail_servers import Dovecot, MailUser, SmtpSink
from tests.support.telegram_rig import TelegramRig


@pytest.fixture
async def rig(fake: FakeTelegram, database_url: str) -> AsyncIterator[TelegramRig]:
    running = TelegramRig(fake, database_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def texts(fake: FakeTelegram, chat_id: int, thread_id: int | None = None) -> list[str]:
    """Texts the bot sent (or copied) to a chat, oldest first."""
    return [str(p.get("text", "(copy)")) for p in fake.sent(chat_id=chat_id, thread_id=thread_id)]


# Email: real Dovecot (one server per session, a fresh user per test) and aiosmtpd. Most tests
# read a server that offers no IDLE, polled every 50 ms (Dovecot announces new mail in IDLE
# only after half a second); the tests about IDLE use `dovecot_idle`.


def _dovecot(idle: bool) -> Iterator[Dovecot]:
    if not Dovecot.available():
        pytest.skip("dovecot is not installed (`make system-deps` installs dovecot-imapd)")
    server = Dovecot(idle=idle)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    yield from _dovecot(idle=False)


@pytest.fixture(scope="session")
def dovecot_idle() -> Iterator[Dovecot]:
    yield from _dovecot(idle=True)


@pytest.fixture
def mail_user(dovecot_server: Dovecot) -> MailUser:
    return dovecot_server.new_user()


@pytest.fixture
def idle_user(dovecot_idle: Dovecot) -> MailUser:
    return dovecot_idle.new_user()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
async def email_rig(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> AsyncIterator[EmailRig]:
    """The email channel running against Dovecot and aiosmtpd, answering with an echo model."""
    running = EmailRig(database_url, dovecot_server, mail_user, smtp)
    await running.start(echo_model())
    try:
        yield running
    finally:
        await running.stop()
