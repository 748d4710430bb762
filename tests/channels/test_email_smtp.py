"""Composing replies and talking SMTP: headers, TLS modes, and what each failure means."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
from aiosmtplib import SMTPDataError, SMTPRecipientRefused, SMTPResponseException

from bot.store.models import OutboxItem
from channels.base import Failed, RetryLater, Sent
from channels.email.compose import (
    MAX_REFERENCES,
    Sender,
    Thread,
    compose,
    message_id_for,
    reply_subject,
)
from channels.email.smtp import SmtpConfig, SmtpTransport, classify_reply
from tests.support.mail_servers import SmtpSink, make_mail, self_signed_certificate

SENDER = Sender("sales@crm.test", "Acme Sales")


def item(author: str = "agent", key: str = "run:1:send:abc", id: int = 7) -> OutboxItem:
    return OutboxItem(
        id=id,
        idempotency_key=key,
        conversation_id=1,
        contact_id=1,
        channel="email",
        recipient="ann@prospect.test",
        author=author,
        text="Hello",
    )


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Pricing", "Re: Pricing"),
        ("RE: Pricing", "RE: Pricing"),
        ("re:  Pricing\t now", "re: Pricing now"),
        ("AW: Preise", "Re: AW: Preise"),
        ("", "A message from Acme Sales"),
    ],
)
def test_a_reply_subject_has_exactly_one_re(subject: str, expected: str) -> None:
    assert reply_subject(subject, "A message from Acme Sales") == expected


def test_the_message_id_is_stable_per_outbox_item() -> None:
    first = message_id_for(item(), "crm.test")

    assert first == message_id_for(item(), "crm.test")  # a retry sends the same id
    assert first != message_id_for(item(key="run:1:send:other"), "crm.test")
    assert first.startswith("<outbox-7-") and first.endswith("@crm.test>")


def test_long_threads_keep_their_root_and_latest_references() -> None:
    refs = tuple(f"<r{n}@x>" for n in range(40))
    message = compose(item(), Thread("Hi", "<r39@x>", refs), SENDER, automatic=True)

    kept = message["References"].split()
    assert len(kept) == MAX_REFERENCES and kept[0] == "<r0@x>" and kept[-1] == "<r39@x>"


def test_automatic_mail_says_so_and_people_s_mail_does_not() -> None:
    thread = Thread("Hi", "<m1@x>", ("<m1@x>",))
    reply = compose(item(), thread, SENDER, automatic=True)
    opener = compose(item(), Thread(), SENDER, automatic=True)
    staff = compose(item("staff"), thread, SENDER, automatic=False)

    assert reply["Auto-Submitted"] == "auto-replied"
    assert opener["Auto-Submitted"] == "auto-generated"  # we started it: not a reply
    assert opener["In-Reply-To"] is None and opener["Subject"] == "A message from Acme Sales"
    assert staff["Auto-Submitted"] is None and staff["X-Auto-Response-Suppress"] is None


@pytest.mark.parametrize(
    ("error", "stage", "expected"),
    [
        (SMTPResponseException(421, "closing"), "connect", RetryLater),
        (SMTPResponseException(554, "no service for you"), "connect", RetryLater),
        (SMTPRecipientRefused(450, "busy", "a@b"), "rcpt", RetryLater),
        (SMTPDataError(451, "try later"), "data", RetryLater),
        (SMTPRecipientRefused(550, "5.1.1 unknown", "a@b"), "rcpt", Failed),
        (SMTPDataError(554, "spam"), "data", Failed),
    ],
)
def test_smtp_replies_are_classified(
    error: SMTPResponseException, stage: str, expected: type
) -> None:
    result = classify_reply(error, stage)

    assert isinstance(result, expected)
    if isinstance(result, Failed):
        assert result.unreachable is (stage == "rcpt")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    return self_signed_certificate(tmp_path)


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_mail_goes_out_over_tls(tls: str, certificate: tuple[Path, Path]) -> None:
    sink = SmtpSink(tls=tls, certificate=certificate)
    sink.start()
    try:
        trust = ssl.create_default_context(cafile=str(certificate[0]))
        transport = SmtpTransport(
            SmtpConfig("127.0.0.1", sink.port, tls, tls_context=trust)  # type: ignore[arg-type]
        )

        result = await transport.send("sales@crm.test", "ann@prospect.test", make_mail("hi"))

        assert result == Sent(None)
        assert sink.to("ann@prospect.test")
    finally:
        sink.stop()


async def test_an_untrusted_certificate_is_not_accepted(certificate: tuple[Path, Path]) -> None:
    sink = SmtpSink(tls="implicit", certificate=certificate)
    sink.start()
    try:
        transport = SmtpTransport(SmtpConfig("127.0.0.1", sink.port, "implicit"))

        result = await transport.send("sales@crm.test", "ann@prospect.test", make_mail("hi"))

        assert isinstance(result, RetryLater) and "TLS" in result.error
        assert sink.received == []
    finally:
        sink.stop()
