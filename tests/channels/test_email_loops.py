"""No mail loops: automatic mail, lists, bounces and our own mail are never answered, and a
robot that keeps writing back gets at most the hourly cap of automatic replies."""

from __future__ import annotations

import asyncio

import pytest

from bot.store.models import AuditEvent, Contact, Message, OutboxItem, RawEmail
from tests.support.email_rig import EmailRig, echo_model
from tests.support.mail_servers import OUR_ADDRESS, Dovecot, MailUser, SmtpSink, make_mail
from tests.support.telegram_rig import eventually

ANN = "ann@prospect.test"


async def _settled(email_rig: EmailRig, raw_rows: int) -> None:
    """Wait until the mailbox reader has taken `raw_rows` messages, and runs could have run."""
    await eventually(lambda: _raw_count(email_rig, raw_rows))
    await asyncio.sleep(0.4)


async def _raw_count(email_rig: EmailRig, expected: int) -> bool:
    return len(await email_rig.rows(RawEmail)) == expected


async def test_an_auto_reply_is_recorded_but_not_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    # Every header that marks automatic mail is in test_email_parse's table of loop rules.
    headers = {"Auto-Submitted": "auto-replied"}
    email_rig.deliver(make_mail("I am out of the office until Monday.", headers=headers))
    await _settled(email_rig, 1)

    [message] = await email_rig.inbound()
    assert message.handled_at is not None and message.run_id is None
    assert message.meta["email"]["kind"] == "auto"
    assert smtp.received == []
    assert await email_rig.outbox() == []
    events = await email_rig.rows(AuditEvent, AuditEvent.kind == "email_not_answered")
    assert [e.payload["kind"] for e in events] == ["auto"]


async def test_mail_from_a_no_reply_address_is_not_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(make_mail("Your invoice is ready.", sender="Billing <no-reply@vendor.test>"))
    await _settled(email_rig, 1)

    assert smtp.received == []
    [message] = await email_rig.inbound()
    assert message.handled_at is not None


async def test_auto_submitted_no_is_a_person_and_is_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(make_mail("A real question", headers={"Auto-Submitted": "no"}))

    await eventually(lambda: smtp.to(ANN))


async def test_list_mail_is_neither_recorded_nor_answered(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    headers = {"List-Id": "<news.vendor.test>", "Precedence": "bulk"}
    email_rig.deliver(
        make_mail("Our spring newsletter", sender="news@vendor.test", headers=headers)
    )
    await _settled(email_rig, 1)

    assert await email_rig.inbound() == []
    assert await email_rig.rows(Contact) == []
    assert smtp.received == []
    [raw] = await email_rig.rows(RawEmail)
    assert raw.verdict == "ignore" and raw.message_id is None


async def test_mail_from_our_own_address_is_ignored(email_rig: EmailRig, smtp: SmtpSink) -> None:
    email_rig.deliver(
        make_mail("Copy of what we sent", sender=f"Acme Sales <{OUR_ADDRESS.upper()}>")
    )
    await _settled(email_rig, 1)

    assert await email_rig.inbound() == []
    assert await email_rig.rows(Contact) == []
    assert smtp.received == []
    events = await email_rig.rows(AuditEvent, AuditEvent.kind == "email_not_answered")
    assert [e.payload["kind"] for e in events] == ["own"]


def dsn(our_message_id: str, status: str = "5.1.1") -> bytes:
    """A standard delivery status notification (RFC 3464), as Postfix sends it."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.prospect.test>\r\n"
        f"To: {OUR_ADDRESS}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "Message-ID: <bounce-1@mx.prospect.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n'
        "\r\n--BB\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system. Your message could not be delivered.\r\n"
        "\r\n--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.prospect.test\r\n\r\n"
        f"Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} User unknown\r\n"
        "\r\n--BB\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Acme Sales <{OUR_ADDRESS}>\r\nTo: {ANN}\r\nSubject: Re: Pricing question\r\n"
        f"Message-ID: {our_message_id}\r\n"
        "\r\n--BB--\r\n"
    ).encode()


def plain_bounce(our_message_id: str) -> bytes:
    """A bounce without a DSN part: the original is only quoted in the text."""
    return make_mail(
        "Sorry, I could not deliver your message to ann@prospect.test.\n\n"
        f"--- original message ---\nMessage-ID: {our_message_id}\nSubject: Re: Pricing\n",
        sender="postmaster@prospect.test",
        subject="Delivery failure",
    )


@pytest.mark.parametrize("make_bounce", [dsn, plain_bounce], ids=["dsn", "plain"])
async def test_a_bounce_is_not_answered_and_fails_the_message_it_bounces(
    email_rig: EmailRig, smtp: SmtpSink, make_bounce: object
) -> None:
    email_rig.deliver(make_mail("What does it cost?"))
    [reply] = await eventually(lambda: smtp.to(ANN))
    our_id = reply.message["Message-ID"]

    email_rig.deliver(make_bounce(our_id))  # type: ignore[operator]

    [item] = await eventually(lambda: email_rig.rows(OutboxItem, OutboxItem.status == "failed"))
    assert item.external_id == our_id and item.last_error.startswith("bounced")
    notices = await eventually(lambda: [t for _, t in email_rig.staff.delivered if "bounced" in t])
    assert "was not delivered" in notices[0] and "You wrote" in notices[0]
    assert len(await email_rig.inbound()) == 1  # the bounce is not a message of the conversation
    await asyncio.sleep(0.3)
    assert len(smtp.received) == 1  # and nobody answered it
    [ours] = await email_rig.rows(Message, Message.direction == "out")
    assert ours.meta["delivery"] == "failed"  # the agent's history shows it as not delivered
    [contact] = await email_rig.rows(Contact)
    if make_bounce is dsn:
        assert contact.unreachable  # 5.1.1: the address does not exist
    events = await email_rig.rows(AuditEvent, AuditEvent.kind == "email_bounced")
    assert [e.payload["outbox_id"] for e in events] == [item.id]


async def test_a_bounce_about_a_full_mailbox_does_not_make_the_contact_unreachable(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(make_mail("What does it cost?"))
    [reply] = await eventually(lambda: smtp.to(ANN))

    email_rig.deliver(dsn(reply.message["Message-ID"], status="5.2.2"))

    await eventually(lambda: email_rig.rows(OutboxItem, OutboxItem.status == "failed"))
    [contact] = await email_rig.rows(Contact)
    assert not contact.unreachable


async def test_a_robot_that_keeps_writing_back_gets_at_most_the_hourly_cap(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    email_rig = EmailRig(
        database_url, dovecot_server, mail_user, smtp, email_autoreply_cap_per_hour=2
    )
    await email_rig.start(echo_model())
    robot = "Ticket System <tickets@robot.test>"
    try:
        for n in range(4):  # a helpdesk that answers every mail, without any auto header
            email_rig.deliver(
                make_mail(f"Ticket #{n} updated", sender=robot, message_id=f"<r{n}@r>")
            )
            await eventually(lambda n=n: _automatic_attempts(email_rig, n + 1))

        assert len(smtp.to("tickets@robot.test")) == 2
        items = sorted(await email_rig.outbox(), key=lambda i: i.id)
        assert [i.status for i in items] == ["sent", "sent", "failed", "failed"]
        assert "automatic reply cap" in (items[2].last_error or "")
        await eventually(
            lambda: (
                len([t for _, t in email_rig.staff.delivered if "automatic reply cap" in t]) == 2
            )
        )
    finally:
        await email_rig.stop()


async def _automatic_attempts(email_rig: EmailRig, expected: int) -> bool:
    done = [i for i in await email_rig.outbox() if i.status in ("sent", "failed")]
    return len(done) == expected


async def test_staff_replies_are_never_capped(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    from bot.desk.staff import StaffMember, reply_to_customer

    email_rig = EmailRig(
        database_url, dovecot_server, mail_user, smtp, email_autoreply_cap_per_hour=1
    )
    await email_rig.start(echo_model())
    try:
        email_rig.deliver(make_mail("Hello"))
        await eventually(lambda: smtp.to(ANN))
        [contact] = await email_rig.rows(Contact)
        assert email_rig.app is not None
        for n in range(3):
            async with email_rig.app.db.transaction() as session:
                await reply_to_customer(
                    session,
                    email_rig.app.audit,
                    contact_id=contact.id,
                    text=f"Staff note {n}",
                    key=f"staff-{n}",
                    staff=StaffMember("staff:1", "Sam"),
                )
            email_rig.app.wake_outbox()
        await eventually(lambda: len(smtp.to(ANN)) == 4)
        out = await email_rig.rows(Message, Message.direction == "out", Message.author == "staff")
        assert len(out) == 3
    finally:
        await email_rig.stop()


async def test_a_bounce_that_overtakes_the_record_of_its_send_waits_for_it(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(make_mail("What does it cost?"))
    [reply] = await eventually(lambda: smtp.to(ANN))
    our_id = reply.message["Message-ID"]
    [item] = await eventually(lambda: email_rig.rows(OutboxItem, OutboxItem.status == "sent"))
    assert email_rig.app is not None
    await _set(
        email_rig, item.id, status="sending", external_id=None
    )  # the send is not recorded yet

    email_rig.deliver(dsn(our_id))
    await asyncio.sleep(0.6)
    assert await email_rig.rows(OutboxItem, OutboxItem.status == "failed") == []
    await _set(email_rig, item.id, status="sent", external_id=our_id)  # now it is

    [failed] = await eventually(lambda: email_rig.rows(OutboxItem, OutboxItem.status == "failed"))
    assert failed.id == item.id and (failed.last_error or "").startswith("bounced")


async def _set(email_rig: EmailRig, item_id: int, **values: object) -> None:
    assert email_rig.app is not None
    async with email_rig.app.db.transaction() as session:
        row = await session.get(OutboxItem, item_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
