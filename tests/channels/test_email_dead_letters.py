"""A mail the bot cannot take is set aside whole; the mailbox is read on past it."""

from __future__ import annotations

from bot.store import cursors, deadletters
from bot.store.models import AuditEvent, DeadLetter
from tests.support.email_rig import EmailRig
from tests.support.mail_servers import SmtpSink, make_mail
from tests.support.telegram_rig import eventually

ANN = "ann@prospect.test"
LONG_SENDER = "x" * 400 + "@prospect.test"


def _long_sender_mail() -> bytes:
    return (
        f"From: {LONG_SENDER}\r\nTo: sales@crm.test\r\nSubject: hi\r\n"
        "Message-ID: <long-sender@prospect.test>\r\n\r\nplease call me\r\n"
    ).encode()


async def test_an_unreadable_mail_is_set_aside_and_the_next_one_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(_long_sender_mail(), make_mail("Hello, are you there?"))
    await eventually(lambda: smtp.to(ANN))
    (letter,) = await eventually(lambda: email_rig.rows(DeadLetter))
    assert letter.source == "email" and letter.kind == "email_unreadable"
    assert letter.payload == _long_sender_mail()  # kept exactly as the server had it
    assert "320" in letter.error
    assert [m.text.splitlines()[-1] for m in await email_rig.inbound()] == ["Hello, are you there?"]
    assert await email_rig.rows(AuditEvent, AuditEvent.kind == "dead_letter")
    assert email_rig.service is not None
    key = email_rig.service.reader.last_uid_key
    assert email_rig.app is not None
    async with email_rig.app.db.transaction() as session:
        assert int(await cursors.load(session, key) or 0) >= 2  # the cursor moved past it


async def test_a_retried_dead_letter_that_fails_again_says_so(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(_long_sender_mail())
    (letter,) = await eventually(lambda: email_rig.rows(DeadLetter))
    assert email_rig.app is not None
    async with email_rig.app.db.transaction() as session:
        await deadletters.queue_retry(session, letter.id)
    await eventually(lambda: _status_is(email_rig, letter.id, "failed_again"))
    (again,) = await email_rig.rows(DeadLetter)
    assert again.seen == 2 and again.retried_at is not None


async def _status_is(rig: EmailRig, letter_id: int, status: str) -> bool:
    rows = await rig.rows(DeadLetter, DeadLetter.id == letter_id)
    return bool(rows) and rows[0].status == status
