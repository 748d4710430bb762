"""Meetings that reach a calendar, end to end through the real channels: a lead qualified by
email gets the invite as a text/calendar part through SMTP and the owner's feed shows it; a
Telegram lead gets the .ics as a document in their time zone, and staff moves and
cancellations reach them with the same UID and the next SEQUENCE."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import aiohttp
from icalendar import Calendar
from sqlalchemy import update

from bot.desk.meeting_notices import label
from bot.desk.meetings import cancel, reschedule
from bot.store import meetings, staff_members
from bot.store.models import Contact, Meeting
from tests.channels.conftest import texts
from tests.support.email_rig import EmailRig
from tests.support.fake_telegram import FakeTelegram
from tests.support.mail_servers import (
    OUR_ADDRESS,
    Dovecot,
    MailUser,
    SmtpSink,
    free_port,
    make_mail,
)
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig, eventually

ANN_EMAIL = "ann@prospect.test"
ANN_TG = 501
GOOD_LEAD = ["We need lead tracking", "12 people", "next month"]
BERLIN = ZoneInfo("Europe/Berlin")
_OFFERED = re.compile(r"Free times for a call: (.+?)\. Which one suits you")


def offered_labels(text: str) -> list[str]:
    found = _OFFERED.search(text)
    assert found is not None, text
    return found.group(1).split("; ")


def calendar_part(message: EmailMessage) -> tuple[str, bytes]:
    """(the method parameter, the document) of the message's text/calendar part."""
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return str(part.get_param("method")), payload


def only_event(document: bytes) -> tuple[Calendar, Calendar]:
    calendar = Calendar.from_ical(document)
    [event] = calendar.walk("VEVENT")
    return calendar, event


async def test_an_email_lead_booked_gets_the_invite_in_the_reply_and_the_feed_shows_it(
    database_url: str, dovecot_server: Dovecot, mail_user: MailUser, smtp: SmtpSink
) -> None:
    port = free_port()
    rig = EmailRig(
        database_url, dovecot_server, mail_user, smtp, events_port=port, events_secret="x" * 20
    )
    await rig.start()  # the shipped agents on the offline provider
    try:
        assert rig.app is not None
        async with rig.app.db.transaction() as session:
            await staff_members.add(session, "Sam")
            token = await meetings.calendar_token(session, "Sam")
        rig.deliver(make_mail("hi", message_id="<m0@prospect.test>"))
        await eventually(lambda: len(smtp.to(ANN_EMAIL)) == 1)
        for n, answer in enumerate(GOOD_LEAD, start=1):
            rig.deliver(make_mail(answer, message_id=f"<m{n}@prospect.test>"))
            await eventually(lambda n=n: len(smtp.to(ANN_EMAIL)) == n + 1, within=15)
        pick = offered_labels(smtp.to(ANN_EMAIL)[-1].body())[1]

        rig.deliver(make_mail(f"{pick} works for me", message_id="<pick@prospect.test>"))

        await eventually(lambda: len(smtp.to(ANN_EMAIL)) == 6, within=15)
        [meeting] = await rig.rows(Meeting)
        invite = next(r for r in smtp.to(ANN_EMAIL) if "calendar invite" in r.body())
        message = invite.message
        assert message["In-Reply-To"] == "<pick@prospect.test>"
        assert message["Subject"] == "Re: Pricing question"
        assert invite.body().startswith(f"Your Intro call with our team is booked for {pick}")
        method, document = calendar_part(message)
        calendar, event = only_event(document)
        assert method == "REQUEST" == str(calendar["method"])
        assert (str(event["uid"]), int(event["sequence"])) == (meeting.uid, 0)
        assert event.decoded("dtstart") == meeting.starts_at
        assert str(event["organizer"]) == f"mailto:{OUR_ADDRESS}"  # the team writes from ours
        assert str(event["attendee"]) == f"mailto:{ANN_EMAIL}"
        assert [p.get_filename() for p in message.iter_attachments()] == ["invite.ics"]
        [contact] = await rig.rows(Contact)
        assert contact.lead_score == 70

        url = f"http://127.0.0.1:{port}/calendar/{token}.ics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            _, shown = only_event(await response.read())
        assert str(shown["uid"]) == meeting.uid and shown.decoded("dtstart") == meeting.starts_at
    finally:
        await rig.stop()


def _documents(fake: FakeTelegram) -> list[tuple[str, bytes, str]]:
    """(file name, content, caption) of each document sent to Ann."""
    return [
        (d["document"]["filename"], d["document"]["content"], d.get("caption", ""))
        for d in fake.documents(chat_id=ANN_TG)
    ]


async def test_a_telegram_lead_gets_the_ics_in_their_zone_and_every_later_change(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    assert rig.app is not None
    fake.user_message(ANN_TG, "hi", first_name="Ann")
    await eventually(lambda: texts(fake, ANN_TG))
    async with rig.app.db.transaction() as session:
        await session.execute(update(Contact).values(timezone="Europe/Berlin"))
    for n, answer in enumerate(GOOD_LEAD, start=1):
        fake.user_message(ANN_TG, answer, first_name="Ann")
        await eventually(lambda n=n: len(texts(fake, ANN_TG)) == n + 1, within=15)
    pick = offered_labels(texts(fake, ANN_TG)[-1])[0]
    assert re.search(r"\b(CET|CEST)$", pick)  # offered in Ann's own zone

    fake.user_message(ANN_TG, f"{pick} works for me", first_name="Ann")

    [(name, content, caption)] = await eventually(lambda: _documents(fake), within=15)
    [meeting] = await rig.rows(Meeting)
    assert name == "invite.ics"
    assert caption == (
        f"Your Intro call with our team is booked for {label(meeting.starts_at, BERLIN)} "
        "(30 minutes). The calendar invite is attached."
    )
    assert label(meeting.starts_at, BERLIN) == pick
    calendar, event = only_event(content)
    assert str(calendar["method"]) == "REQUEST"
    assert (str(event["uid"]), int(event["sequence"])) == (meeting.uid, 0)
    assert event.decoded("dtstart") == meeting.starts_at.astimezone(UTC)
    staff_posts = await eventually(
        lambda: [t for t in texts(fake, STAFF_CHAT) if t.startswith("📅 Meeting booked")]
    )
    assert "Ann with the team" in staff_posts[0]

    later = datetime.fromisoformat("2031-01-06T14:00:00+00:00")
    async with rig.app.db.transaction() as session:
        moved = await reschedule(
            session, rig.app.audit, meeting.id, later, minutes=45, by="cli", team_zone=BERLIN
        )
    assert moved.done, moved.detail
    rig.app.wake_outbox()
    await eventually(lambda: len(_documents(fake)) == 2, within=15)
    async with rig.app.db.transaction() as session:
        dropped = await cancel(session, rig.app.audit, meeting.id, by="cli", team_zone=BERLIN)
    assert dropped.done, dropped.detail
    rig.app.wake_outbox()
    await eventually(lambda: len(_documents(fake)) == 3, within=15)

    _, update_doc, update_caption = _documents(fake)[1]
    cancel_name, cancel_doc, cancel_caption = _documents(fake)[2]
    calendar, event = only_event(update_doc)
    assert (str(calendar["method"]), str(event["uid"]), int(event["sequence"])) == (
        "REQUEST",
        meeting.uid,
        1,
    )
    assert event.decoded("dtstart") == later and event.decoded("dtend") == datetime.fromisoformat(
        "2031-01-06T14:45:00+00:00"
    )
    assert update_caption.startswith(
        "Your Intro call with our team has moved to Mon 6 Jan 15:00 CET"
    )
    calendar, event = only_event(cancel_doc)
    assert (str(calendar["method"]), str(event["uid"]), int(event["sequence"])) == (
        "CANCEL",
        meeting.uid,
        2,
    )
    assert str(event["status"]) == "CANCELLED" and cancel_name == "cancellation.ics"
    assert "is cancelled" in cancel_caption
