"""A prospect's email is answered in its thread, and a thread stays one conversation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from bot.store.models import Conversation, Message, OutboxItem, RawEmail
from tests.support.email_rig import EmailRig, echo_model
from tests.support.mail_servers import OUR_ADDRESS, Dovecot, MailUser, SmtpSink, make_mail
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import eventually

ANN = "ann@prospect.test"


async def _recorded(email_rig: EmailRig) -> list[OutboxItem]:
    items = await email_rig.outbox()
    return items if items and all(i.status != "sending" for i in items) else []


async def test_a_prospects_email_gets_a_reply_in_its_thread(
    email_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig.deliver(
        make_mail(
            "Hi, what does it cost for 12 people?\n\nThanks,\nAnn\n-- \nAnn Lee · Prospect Inc",
            message_id="<first@prospect.test>",
            references="<older@prospect.test>",
            subject="Pricing <for> teams & co",
        )
    )

    replies = await eventually(lambda: smtp.to(ANN))

    assert len(replies) == 1
    reply = replies[0].message
    assert replies[0].mail_from == OUR_ADDRESS
    assert reply["From"].addresses[0].display_name == "Acme Sales"
    assert reply["From"].addresses[0].addr_spec == OUR_ADDRESS
    assert reply["To"].addresses[0].addr_spec == ANN
    assert reply["Subject"] == "Re: Pricing <for> teams & co"
    assert reply["In-Reply-To"] == "<first@prospect.test>"
    assert reply["References"].split() == ["<older@prospect.test>", "<first@prospect.test>"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert re.fullmatch(r"<outbox-\d+-[0-9a-f]{12}@crm\.test>", reply["Message-ID"])
    assert reply.get_content_type() == "multipart/alternative"
    plain, html = replies[0].body("plain"), replies[0].body("html")
    assert "what does it cost for 12 people?" in plain
    assert "Ann Lee · Prospect Inc" not in plain  # the signature was not part of the message
    assert "<p>" in html and "<script" not in html
    [stored] = await email_rig.inbound()
    assert stored.text == "Hi, what does it cost for 12 people?"  # a reply: no subject line
    assert stored.meta["email"]["message_id"] == "<first@prospect.test>"
    # The sink has the mail before the bot has the server's answer and records it.
    [item] = await eventually(lambda: _recorded(email_rig))
    assert item.status == "sent" and item.external_id == reply["Message-ID"]
    [raw] = await email_rig.rows(RawEmail)
    assert raw.message_id == stored.id and b"first@prospect.test" in raw.raw
    assert email_rig.dovecot.seen(email_rig.user) == 1


async def test_html_in_the_text_is_escaped_in_the_html_alternative(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    email_rig = EmailRig(database_url, dovecot_server, mail_user, smtp)
    await email_rig.start(FunctionModel(lambda request: turn('Use <b>bold</b> & "quotes"\n\nBye')))
    try:
        email_rig.deliver(make_mail("hello"))
        [reply] = await eventually(lambda: smtp.to(ANN))
        html = reply.body("html")
        assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quotes&quot;" in html
        assert html.count("<p>") == 2
    finally:
        await email_rig.stop()


@pytest.fixture
async def idle_rig(
    database_url: str, dovecot_idle: Dovecot, idle_user: MailUser, smtp: SmtpSink
) -> AsyncIterator[EmailRig]:
    running = EmailRig(database_url, dovecot_idle, idle_user, smtp)
    await running.start(echo_model())
    try:
        yield running
    finally:
        await running.stop()


async def test_a_three_exchange_thread_stays_one_conversation(
    idle_rig: EmailRig, smtp: SmtpSink
) -> None:
    email_rig = idle_rig  # new mail announced by IDLE, as most servers do
    first_id = "<t1@prospect.test>"
    email_rig.deliver(make_mail("We are 12 people. Pricing?", message_id=first_id))
    [ours1] = await eventually(lambda: smtp.to(ANN))
    our_id1 = ours1.message["Message-ID"]

    quoted = "\n".join(f"> {line}" for line in ours1.body().splitlines())
    email_rig.deliver(
        make_mail(
            f"Thanks! Do you offer a trial?\n\nOn Mon, 3 Mar 2025, Acme Sales <{OUR_ADDRESS}>"
            f" wrote:\n{quoted}\n",
            subject="Re: Pricing question",
            message_id="<t2@prospect.test>",
            in_reply_to=our_id1,
            references=f"{first_id} {our_id1}",
        )
    )
    await eventually(lambda: len(smtp.to(ANN)) == 2)
    our_id2 = smtp.to(ANN)[1].message["Message-ID"]
    email_rig.deliver(
        make_mail(
            "Great, sign us up.",
            subject="Re: Pricing question",
            message_id="<t3@prospect.test>",
            in_reply_to=our_id2,
            references=f"{first_id} {our_id1} <t2@prospect.test> {our_id2}",
        )
    )
    await eventually(lambda: len(smtp.to(ANN)) == 3)

    conversations = await email_rig.rows(Conversation)
    assert len(conversations) == 1
    inbound = await email_rig.inbound()
    assert [m.conversation_id for m in inbound] == [conversations[0].id] * 3
    assert inbound[0].text == "Subject: Pricing question\n\nWe are 12 people. Pricing?"
    assert inbound[1].text == "Thanks! Do you offer a trial?"  # the quoted history is cut
    third = smtp.to(ANN)[2].message
    assert third["Subject"] == "Re: Pricing question"
    assert third["In-Reply-To"] == "<t3@prospect.test>"
    assert third["References"].split() == [
        first_id,
        our_id1,
        "<t2@prospect.test>",
        our_id2,
        "<t3@prospect.test>",
    ]
    ours = await email_rig.rows(Message, Message.direction == "out")
    assert len({m.conversation_id for m in ours}) == 1
