"""Mail comes in exactly once, whatever its shape and whatever happens to the connection."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.store import cursors
from bot.store.db import Database
from bot.store.models import Message, RawEmail
from channels.email.imap import Connection
from channels.email.intake import FetchedMail
from tests.support.email_rig import EmailRig, echo_model
from tests.support.mail_servers import (
    Dovecot,
    MailUser,
    SmtpSink,
    make_mail,
    self_signed_certificate,
)
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_rig import eventually

ANN = "ann@prospect.test"


async def _answered(email_rig: EmailRig, smtp: SmtpSink, mail: bytes, sender: str = ANN) -> Message:
    email_rig.deliver(mail)
    await eventually(lambda: smtp.to(sender))
    [message] = await email_rig.inbound()
    return message


async def test_an_html_only_mail_is_read_as_text_and_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    html = (
        "<html><head><style>p {color: red}</style><script>alert('x')</script></head><body>"
        "<p>Hello, we need <b>12 seats</b> &amp; an API.</p><ul><li>CRM</li><li>Email</li></ul>"
        '<div class="gmail_quote">On Mon, Sales wrote:<blockquote>Old offer</blockquote></div>'
        "</body></html>"
    )
    message = await _answered(email_rig, smtp, make_mail("", html=html))

    assert "Hello, we need 12 seats & an API." in message.text
    assert "* CRM" in message.text and "* Email" in message.text
    assert "<" not in message.text and "alert" not in message.text and "color" not in message.text
    assert "Old offer" not in message.text  # the quoted history is cut
    assert message.meta["email"]["html_only"] is True


async def test_a_mis_declared_charset_is_read_correctly(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    latin1_declared_utf8 = (
        b"From: J\xfcrgen <juergen@prospect.test>\r\nTo: sales@crm.test\r\n"
        b"Subject: Gr\xfc\xdfe\r\nMessage-ID: <latin@prospect.test>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xfc\xdfe aus K\xf6ln, wir brauchen ein Angebot.\r\n"
    )
    message = await _answered(email_rig, smtp, latin1_declared_utf8, "juergen@prospect.test")

    assert "Grüße aus Köln, wir brauchen ein Angebot." in message.text
    reply = smtp.to("juergen@prospect.test")[0].message
    assert reply["Subject"] == "Re: Grüße"


async def test_a_5_mb_attachment_is_recorded_and_never_opened(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    exe = b"MZ" + bytes(range(256)) * (5 * 1024 * 1024 // 256)
    mail = make_mail(
        "Our requirements are attached.",
        attachments=(("requirements.exe", "application/x-msdownload", exe),),
    )
    message = await _answered(email_rig, smtp, mail)

    assert message.attachments == [
        {
            "type": "email_attachment",
            "name": "requirements.exe",
            "mime_type": "application/x-msdownload",
            "size": len(exe),
        }
    ]
    assert "Our requirements are attached." in message.text
    [raw] = await email_rig.rows(RawEmail)
    assert raw.size == len(mail) > 5 * 1024 * 1024


async def test_a_malformed_mime_message_is_still_handled(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    broken = (
        b"From: Ann Lee <ann@prospect.test>\r\nTo: sales@crm.test\r\n"
        b"Subject: =?utf-8?q?unterminated\r\nMessage-ID: <broken@prospect.test>\r\n"
        b'Date: yesterday-ish\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=klingon\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8sIGNhbiB3ZSB0YWxrPw=@@=\r\n"
        b'--b1\r\nContent-Type: application/pdf; name="x.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x!!\x00\r\n"  # never closed
    )
    message = await _answered(email_rig, smtp, broken)

    assert message.text == "Subject: =?utf-8?q?unterminated\n\nHello, can we talk?"
    assert message.sent_at is None
    assert [a["name"] for a in message.attachments] == ["x.pdf"]
    assert message.meta["email"]["defects"]


@pytest.mark.parametrize("known_mailbox", [True, False], ids=["cursor", "first-read"])
async def test_a_restart_halfway_through_ten_unread_mails_answers_each_exactly_once(
    database_url: str,
    dovecot_server: Dovecot,
    mail_user: MailUser,
    smtp: SmtpSink,
    known_mailbox: bool,
) -> None:
    senders = [f"p{n}@prospect.test" for n in range(10)]
    mails = [
        make_mail(f"Question {n}", sender=s, message_id=f"<q{n}@x>") for n, s in enumerate(senders)
    ]
    first = EmailRig(database_url, dovecot_server, mail_user, smtp)
    if not known_mailbox:  # all ten are there before crmbot ever reads the mailbox
        first.deliver(*mails)
    await first.start(echo_model())
    assert first.service is not None
    handled = 0
    reader = first.service.reader
    original = reader.handle

    async def stall_after_five(session: Any, mail: FetchedMail) -> int | None:
        nonlocal handled
        handled += 1
        return await original(session, mail)

    stalled = asyncio.Event()

    async def take(*args: Any, **kwargs: Any) -> None:
        if handled == 5:
            stalled.set()
            await asyncio.Event().wait()  # the worker hangs before its sixth until stopped
        await take_one(*args, **kwargs)

    reader.handle = stall_after_five
    take_one, reader._take = reader._take, take  # type: ignore[method-assign]
    if known_mailbox:
        await eventually(lambda: _cursor(first, "uidvalidity"))
        first.deliver(*mails)
    await eventually(stalled.is_set)
    # Let the first five replies go out: a reply cut off mid-send would be `unknown` (never
    # resent), which is the outbox's guarantee, not what this test is about.
    await eventually(lambda: len(smtp.received) == 5)
    await first.stop()
    assert await _inbound_count(database_url) == 5

    second = EmailRig(database_url, dovecot_server, mail_user, smtp)
    await second.start(echo_model())
    try:
        await eventually(lambda: all(smtp.to(s) for s in senders))
        await asyncio.sleep(0.3)  # a duplicate would show up by now
        assert [len(smtp.to(s)) for s in senders] == [1] * 10
        for n, sender in enumerate(senders):
            assert f"Question {n}" in smtp.to(sender)[0].body()
        inbound = await second.inbound()
        assert sorted(m.text for m in inbound) == sorted(
            f"Subject: Pricing question\n\nQuestion {n}" for n in range(10)
        )
        assert len(await second.rows(RawEmail)) == 10
        assert dovecot_server.seen(mail_user) == 10
        assert await _cursor(second, "last_uid", "10")
    finally:
        await second.stop()


async def _inbound_count(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            query = select(func.count(Message.id)).where(Message.direction == "in")
            return int(await session.scalar(query) or 0)
    finally:
        await db.dispose()


async def test_a_changed_uidvalidity_does_not_answer_the_mailbox_again(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    dovecot_server.create(mail_user, "Support")
    email_rig = EmailRig(database_url, dovecot_server, mail_user, smtp, imap_mailbox="Support")
    await email_rig.start(echo_model())
    try:
        old = [make_mail(f"Old {n}", message_id=f"<old{n}@x>") for n in range(3)]
        email_rig.deliver(*old)
        await eventually(lambda: smtp.to(ANN))
        await eventually(lambda: _cursor(email_rig, "last_uid", "3"))
        assert email_rig.app is not None
        await email_rig.app.settle()
        # One burst is one answer, unless a busy machine split it; either way, what was
        # answered once must not be answered again below.
        answered = len(smtp.to(ANN))
        before = await _cursor(email_rig, "uidvalidity")

        # The mailbox is rebuilt (a migration, a restore) and connections are dropped: a new
        # UIDVALIDITY, the same mail, plus one message that really is new.
        dovecot_server.recreate(mail_user, "Support")
        email_rig.deliver(*old, make_mail("New one", message_id="<new@x>", sender="Bo <bo@b.test>"))
        dovecot_server.kick(mail_user)

        await eventually(lambda: smtp.to("bo@b.test"))
        await eventually(lambda: _cursor(email_rig, "last_uid", "4"))
        assert await _cursor(email_rig, "uidvalidity") != before
        await email_rig.app.settle()
        assert len(smtp.to(ANN)) == answered
        assert sorted(m.text.split("\n\n")[-1] for m in await email_rig.inbound()) == [
            "New one",
            "Old 0",
            "Old 1",
            "Old 2",
        ]
    finally:
        await email_rig.stop()


async def _cursor(email_rig: EmailRig, name: str, expected: str | None = None) -> Any:
    assert email_rig.app is not None and email_rig.service is not None
    key = {"last_uid": email_rig.service.reader.last_uid_key}.get(
        name, email_rig.service.reader.validity_key
    )
    async with email_rig.app.db.transaction() as session:
        value = await cursors.load(session, key)
    return value if expected is None else value == expected


async def test_a_server_without_idle_is_polled(
    email_rig: EmailRig, smtp: SmtpSink, dovecot_server: Dovecot, mail_user: MailUser
) -> None:
    await asyncio.sleep(0.2)
    email_rig.deliver(make_mail("Polled?"))

    await eventually(lambda: smtp.to(ANN))
    log = dovecot_server.log.read_text().splitlines()
    assert not [line for line in log if f"imap({mail_user.name})" in line and "IDLE" in line]


async def test_the_mailbox_is_read_over_implicit_tls(
    database_url: str, smtp: SmtpSink, tmp_path: Path
) -> None:
    if not Dovecot.available() or shutil.which("openssl") is None:
        pytest.skip("dovecot and the openssl command are needed")
    server = Dovecot(certificate=self_signed_certificate(tmp_path))
    server.start()
    try:
        email_rig = EmailRig(database_url, server, server.new_user(), smtp, imap_tls="implicit")
        await email_rig.start(echo_model())
        try:
            email_rig.deliver(make_mail("Over TLS"))
            await eventually(lambda: smtp.to(ANN))
        finally:
            await email_rig.stop()
        assert "TLS" in server.log.read_text()
    finally:
        server.stop()


async def test_idle_is_renewed_and_mail_still_arrives(
    database_url: str,
    dovecot_idle: Dovecot,
    idle_user: MailUser,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idles = 0
    idle = Connection.idle

    async def counted(self: Connection, *args: Any) -> None:
        nonlocal idles
        idles += 1
        await idle(self, *args)

    monkeypatch.setattr(Connection, "idle", counted)
    email_rig = EmailRig(database_url, dovecot_idle, idle_user, smtp, imap_idle_seconds=0.2)
    await email_rig.start(echo_model())
    try:
        await asyncio.sleep(0.7)
        assert idles >= 3  # renewed (DONE, then IDLE again) every 0.2 s
        email_rig.deliver(make_mail("Still there?"))
        await eventually(lambda: smtp.to(ANN))
    finally:
        await email_rig.stop()


async def test_a_dropped_connection_is_reopened_and_caught_up(
    database_url: str, dovecot_idle: Dovecot, idle_user: MailUser, smtp: SmtpSink
) -> None:
    email_rig = EmailRig(database_url, dovecot_idle, idle_user, smtp)
    await email_rig.start(echo_model())
    try:
        email_rig.deliver(make_mail("Before", message_id="<before@x>"))
        await eventually(lambda: smtp.to(ANN))
        await asyncio.sleep(0.1)
        dovecot_idle.kick(idle_user)  # the server drops the connection, in IDLE
        email_rig.deliver(make_mail("After the drop", message_id="<after@x>", sender="bo@b.test"))

        await eventually(lambda: smtp.to("bo@b.test"))
        assert len(smtp.to(ANN)) == 1
    finally:
        await email_rig.stop()


async def test_one_worker_reads_the_mailbox(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    first = EmailRig(database_url, dovecot_server, mail_user, smtp, worker_id="w1")
    second = EmailRig(database_url, dovecot_server, mail_user, smtp, worker_id="w2")
    await first.start(echo_model())
    await second.start(echo_model())
    assert second.service is not None
    sessions = 0

    async def counted() -> None:
        nonlocal sessions
        sessions += 1

    second.service.reader._session = counted  # type: ignore[method-assign]
    try:
        senders = [f"p{n}@prospect.test" for n in range(4)]
        first.deliver(*(make_mail("Hello", sender=sender) for sender in senders))
        await eventually(lambda: all(smtp.to(s) for s in senders))
        await asyncio.sleep(0.3)
        assert [len(smtp.to(s)) for s in senders] == [1] * 4
        assert sessions == 0  # the second worker waits for the lease; it never connected
    finally:
        await second.stop()
        await first.stop()


async def test_a_refused_login_is_logged_and_retried_without_stopping_the_app(
    database_url: str, smtp: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    if not Dovecot.available():
        pytest.skip("dovecot is not installed")
    server = Dovecot()  # its own: Dovecot slows every login from an address that failed one
    server.start()
    try:
        email_rig = EmailRig(database_url, server, server.new_user(), smtp, imap_password="wrong")
        await email_rig.start(echo_model())
        try:
            await eventually(lambda: "IMAP_PASSWORD" in caplog.text)
            await asyncio.sleep(0.2)
            assert (
                email_rig.service is not None and email_rig.service.reader.failures >= 1
            )  # backing off
            assert email_rig._task is not None and not email_rig._task.done()
            assert "wrong" not in caplog.text  # the password itself is never logged
        finally:
            await email_rig.stop()
    finally:
        server.stop()


async def test_a_connection_cut_in_the_middle_of_a_fetch_loses_and_repeats_nothing(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    async with TcpProxy(dovecot_server.port) as proxy:
        email_rig = EmailRig(database_url, dovecot_server, mail_user, smtp, imap_port=proxy.port)
        await email_rig.start(echo_model())
        try:
            # The server has sent the FETCH answer's first bytes, up to the subject, when the
            # connection resets: the mail is half read, and not yet recorded.
            proxy.cut_when(b"Subject: Cut mid-fetch")
            email_rig.deliver(make_mail("Whole?", subject="Cut mid-fetch", message_id="<c@x>"))
            await eventually(lambda: smtp.to(ANN), within=15)
            assert proxy.cuts == 1
            email_rig.deliver(make_mail("Next", sender="bo@b.test", message_id="<n@x>"))
            await eventually(lambda: smtp.to("bo@b.test"), within=15)
            await asyncio.sleep(0.3)  # a duplicate would show up by now
            assert len(smtp.to(ANN)) == 1
            assert sorted(m.text for m in await email_rig.inbound()) == [
                "Subject: Cut mid-fetch\n\nWhole?",
                "Subject: Pricing question\n\nNext",
            ]
        finally:
            await email_rig.stop()


async def test_a_restarted_imap_server_is_reconnected_to_and_nothing_is_lost_or_repeated(
    database_url: str, smtp: SmtpSink
) -> None:
    if not Dovecot.available():
        pytest.skip("dovecot is not installed (`make system-deps` installs dovecot-imapd)")
    server = Dovecot(idle=True)  # a server of its own: the test takes it down
    server.start()
    user = server.new_user()
    email_rig = EmailRig(database_url, server, user, smtp)
    await email_rig.start(echo_model())
    try:
        email_rig.deliver(make_mail("Before", message_id="<before@x>"))
        await eventually(lambda: smtp.to(ANN))
        port = server.port
        server.halt()  # connections drop; reconnecting is refused while it is down
        await asyncio.sleep(1.5)
        server.start()
        assert server.port == port
        email_rig.deliver(make_mail("After", sender="bo@b.test", message_id="<after@x>"))
        await eventually(lambda: smtp.to("bo@b.test"), within=20)
        await asyncio.sleep(0.3)
        assert len(smtp.to(ANN)) == 1 and len(smtp.to("bo@b.test")) == 1
        assert len(await email_rig.inbound()) == 2
    finally:
        await email_rig.stop()
        server.stop()


async def test_mail_that_arrives_while_the_reader_catches_up_is_read_without_waiting_for_more(
    database_url: str, dovecot_idle: Dovecot, idle_user: MailUser, smtp: SmtpSink
) -> None:
    """Found by the crash harness: the server announces new mail once, in the answer to
    whatever command is running. Announced during the catch-up (here: while the first mail is
    stored), it is not announced again in IDLE, so the reader must look before it waits."""
    email_rig = EmailRig(database_url, dovecot_idle, idle_user, smtp)
    await email_rig.start(echo_model())
    assert email_rig.service is not None
    reader = email_rig.service.reader
    original = reader.handle

    async def second_arrives_meanwhile(session: Any, mail: FetchedMail) -> int | None:
        if mail.uid == 1:
            await asyncio.to_thread(
                email_rig.deliver, make_mail("Second", sender="bo@b.test", message_id="<2@x>")
            )
        return await original(session, mail)

    reader.handle = second_arrives_meanwhile
    try:
        email_rig.deliver(make_mail("First", message_id="<1@x>"))
        await eventually(lambda: smtp.to(ANN))
        await eventually(lambda: smtp.to("bo@b.test"), within=10)
        assert len(smtp.to(ANN)) == 1 and len(smtp.to("bo@b.test")) == 1
    finally:
        await email_rig.stop()
