"""Replies go out through the outbox: transient SMTP trouble delays them, permanent refusals
are recorded and reported, an uncertain send is never repeated, and people answer in thread."""

from __future__ import annotations

import asyncio

import pytest

from bot.desk.staff import StaffMember, reply_to_customer
from bot.store.models import Contact, Conversation, Message, OutboxItem, StaffThread
from tests.channels.conftest import texts
from tests.support.email_rig import EmailRig, echo_model
from tests.support.fake_telegram import FakeTelegram
from tests.support.mail_servers import Dovecot, MailUser, SmtpSink, make_mail
from tests.support.telegram_rig import STAFF_CHAT, eventually

ANN = "ann@prospect.test"


async def _item(email_rig: EmailRig, *statuses: str) -> OutboxItem | None:
    items = [i for i in await email_rig.outbox() if i.status in statuses]
    return items[0] if items else None


async def _attempted(email_rig: EmailRig, times: int) -> bool:
    return any(i.attempts >= times for i in await email_rig.outbox())


async def test_an_smtp_server_that_is_down_for_a_while_delays_replies_without_losing_them(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    smtp.stop()
    email_rig.deliver(make_mail("Anyone there?"))
    await eventually(lambda: _attempted(email_rig, 3))  # refused connections, retried with backoff
    [item] = await email_rig.outbox()
    assert item.status == "pending" and "connect" in (item.last_error or "").lower()

    smtp.start()

    [reply] = await eventually(lambda: smtp.to(ANN))
    assert "Anyone there?" in reply.body()
    await eventually(lambda: _item(email_rig, "sent"))
    await asyncio.sleep(0.3)
    assert len(smtp.to(ANN)) == 1


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("data", "451 4.3.0 Try again later"),
        ("rcpt", "450 4.2.1 Mailbox busy"),
        ("data", "421 4.7.0 Too many connections, closing"),
    ],
)
async def test_a_transient_smtp_refusal_is_retried(
    email_rig: EmailRig, smtp: SmtpSink, where: str, reply: str
) -> None:
    setattr(smtp, f"{where}_reply", reply)
    email_rig.deliver(make_mail("Hello"))
    await eventually(lambda: _attempted(email_rig, 2))
    assert smtp.received == []

    setattr(smtp, f"{where}_reply", None)

    await eventually(lambda: smtp.to(ANN))
    item = await eventually(lambda: _item(email_rig, "sent"))
    assert item.attempts >= 3 and reply.split()[0] in (item.last_error or "")


async def test_a_permanent_refusal_of_the_address_fails_reports_and_marks_unreachable(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    smtp.rcpt_reply = "550 5.1.1 <ann@prospect.test>: Recipient address rejected"
    email_rig.deliver(make_mail("Hello"))

    item = await eventually(lambda: _item(email_rig, "failed"))

    assert item.attempts == 1  # never retried
    assert "550" in (item.last_error or "")
    [contact] = await email_rig.rows(Contact)
    assert contact.unreachable  # the agent's contact card says so; send_message refuses
    [ours] = await email_rig.rows(Message, Message.direction == "out")
    assert ours.meta["delivery"] == "failed"  # and its history shows the reply never arrived
    await eventually(lambda: [t for _, t in email_rig.staff.delivered if "550 5.1.1" in t])


async def test_a_permanent_refusal_of_the_content_does_not_mark_the_contact_unreachable(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    smtp.data_reply = "554 5.7.1 Message rejected as spam"
    email_rig.deliver(make_mail("Hello"))

    item = await eventually(lambda: _item(email_rig, "failed"))

    assert "554" in (item.last_error or "") and item.attempts == 1
    [contact] = await email_rig.rows(Contact)
    assert not contact.unreachable
    await eventually(lambda: [t for _, t in email_rig.staff.delivered if "554" in t])


async def test_a_connection_lost_after_the_data_is_unknown_and_never_resent(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    smtp.hang_up_after_data = True
    email_rig.deliver(make_mail("Hello"))

    item = await eventually(lambda: _item(email_rig, "unknown"))

    await asyncio.sleep(0.3)
    assert len(smtp.to(ANN)) == 1  # it did arrive, once; we cannot know, so we never resend
    assert item.attempts == 1
    await eventually(
        lambda: [t for _, t in email_rig.staff.delivered if "may not have been delivered" in t]
    )


async def test_a_staff_reply_goes_out_in_the_same_thread_without_auto_submitted(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(make_mail("Can I talk to sales?", message_id="<ask@prospect.test>"))
    [agent_reply] = await eventually(lambda: smtp.to(ANN))
    assert agent_reply.message["Auto-Submitted"] == "auto-replied"
    [contact] = await email_rig.rows(Contact)
    assert email_rig.app is not None

    async with email_rig.app.db.transaction() as session:
        status = await reply_to_customer(
            session,
            email_rig.app.audit,
            contact_id=contact.id,
            text="Hi Ann, Sam from sales here. When suits you?",
            key="staff-reply-1",
            staff=StaffMember("telegram:8001", "Sam"),
        )
    assert status == "sent"
    email_rig.app.wake_outbox()

    await eventually(lambda: len(smtp.to(ANN)) == 2)
    staff_reply = smtp.to(ANN)[1].message
    assert staff_reply["Auto-Submitted"] is None
    assert staff_reply["X-Auto-Response-Suppress"] is None
    assert staff_reply["In-Reply-To"] == "<ask@prospect.test>"
    assert staff_reply["Subject"] == "Re: Pricing question"
    assert "Sam from sales" in smtp.to(ANN)[1].body()


async def test_a_handed_off_email_conversation_goes_to_the_staff_topic_and_back(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    async with FakeTelegram() as fake:
        fake.add_supergroup(STAFF_CHAT, "Staff")
        fake.set_member_status(STAFF_CHAT, 8001, "member")
        email_rig = EmailRig(database_url, dovecot_server, mail_user, smtp, telegram=fake)
        await email_rig.start(echo_model())
        try:
            email_rig.deliver(
                make_mail("I want a refund, now.", message_id="<refund@prospect.test>")
            )
            [notice] = await eventually(lambda: smtp.to(ANN))
            assert "colleague" in notice.body()
            assert notice.message["Auto-Submitted"] == "auto-replied"
            await eventually(lambda: email_rig.rows(StaffThread))
            [thread] = await email_rig.rows(StaffThread)
            summary = await eventually(lambda: texts(fake, STAFF_CHAT, thread.thread_id))
            assert "Handoff: Ann Lee" in summary[0] and "Channel: email" in summary[0]
            [conversation] = await email_rig.rows(Conversation)
            assert conversation.state == "handed_off"

            fake.user_message(
                8001,
                "Hi Ann, Alice from billing. I have refunded your last invoice.",
                first_name="Alice",
                chat_id=STAFF_CHAT,
                message_thread_id=thread.thread_id,
            )

            await eventually(lambda: len(smtp.to(ANN)) == 2)
            reply = smtp.to(ANN)[1]
            assert "Alice from billing" in reply.body()
            assert reply.message["In-Reply-To"] == "<refund@prospect.test>"
            assert reply.message["Auto-Submitted"] is None

            email_rig.deliver(
                make_mail(
                    "Thanks Alice!",
                    subject="Re: Pricing question",
                    in_reply_to=reply.message["Message-ID"],
                    references=f"<refund@prospect.test> {reply.message['Message-ID']}",
                )
            )
            await eventually(
                lambda: any("Thanks Alice!" in t for t in texts(fake, STAFF_CHAT, thread.thread_id))
            )
            await asyncio.sleep(0.3)
            assert len(smtp.to(ANN)) == 2  # the agent stays quiet while people have it
        finally:
            await email_rig.stop()
