"""Reading mail without the servers: text, charsets, quotes, attachments, and the loop rules."""

from __future__ import annotations

import pytest

from channels.email.loops import Kind, classify
from channels.email.parse import parse_email
from channels.email.reply import Cut, Reply, split_reply, strip_reply
from channels.email.text import decode_text
from tests.support.mail_servers import OUR_ADDRESS, make_mail

OWN = frozenset({OUR_ADDRESS})


def test_plain_text_is_preferred_over_its_html_alternative() -> None:
    parsed = parse_email(make_mail("Plain words", html="<p>HTML words</p>"))

    assert parsed.text == "Plain words" and not parsed.html_only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Yes, 12 people.\n\nOn Mon, 3 Mar 2025 at 10:00, Acme <sales@crm.test> wrote:\n"
            "> How many people?\n",
            "Yes, 12 people.",
        ),
        (
            "Ja, 12 Leute.\n\nAm 03.03.2025 um 10:00 schrieb Acme <sales@crm.test>:\n"
            "> Wie viele?\n",
            "Ja, 12 Leute.",
        ),
        ("Sounds good.\n\nBest,\nAnn\n-- \nAnn Lee\nProspect Inc, CEO\n", "Sounds good."),
        (
            "Call me.\n\nSent from my iPhone\n\n-----Original Message-----\nFrom: Acme\n"
            "Subject: Hi\n\nOld text",
            "Call me.",
        ),
    ],
    ids=["english-quote", "german-quote", "signature", "outlook-original"],
)
def test_quoted_history_and_signatures_are_cut(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_a_message_that_is_all_quote_keeps_its_text() -> None:
    reply = split_reply("> only a quote\n> nothing new")

    assert (reply.new, reply.cut) == ("> only a quote\n> nothing new", Cut.KEPT_WHOLE)


ACME_WROTE = "On Mon, 3 Mar 2025 at 10:00, Acme <sales@crm.test> wrote:"
OUTLOOK_HEADER = "From: Acme <sales@crm.test>\nSent: Monday, 3 March 2025 10:00\nTo: Ann Lee\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"{ACME_WROTE}\n> How many people?\n\nTwelve, and two more in May.\n",
            "Twelve, and two more in May.",
        ),
        (
            "We would need:\n\n- 12 seats\n- single sign-on\n- one invoice a year\n\n"
            f"Thanks,\nAnn\n\n{ACME_WROTE}\n> What do you need?\n",
            "We would need:\n\n- 12 seats\n- single sign-on\n- one invoice a year",
        ),
        (
            "Two plans interest us:\n-- Team, monthly\n-- Business, yearly\n",
            "Two plans interest us:\n-- Team, monthly\n-- Business, yearly",
        ),
        (
            f"Two questions:\n\n   - the price?\n   - a trial?\n\n{ACME_WROTE}\n> Any questions?\n",
            "Two questions:\n\n   - the price?\n   - a trial?",
        ),
        (
            "Here is the fix\n\n--Ann\n",
            "Here is the fix",
        ),
    ],
    ids=["bottom-posted", "bullets-after-a-colon", "dash-list", "indented-list", "dash-name"],
)
def test_nothing_the_sender_wrote_is_cut(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_answers_between_the_quoted_lines_keep_the_questions_they_answer() -> None:
    text = f"{ACME_WROTE}\n> How many seats?\n12\n> Which plan?\nBusiness\n> Anything else?\n"

    assert strip_reply(text) == "> How many seats?\n\n12\n\n> Which plan?\n\nBusiness"


def test_a_forwarded_message_is_not_cut() -> None:
    text = (
        "Can you check this?\n\n---------- Forwarded message ---------\n"
        f"{OUTLOOK_HEADER}Subject: Invoice 12\n\nYour invoice of 500 EUR is overdue.\n"
    )

    assert split_reply(text) == Reply(text.strip(), Cut.NONE)


def test_history_under_a_full_outlook_header_is_cut_however_long() -> None:
    text = f"Yes, go ahead.\n\n{OUTLOOK_HEADER}Subject: Offer\n\n" + "Our offer. " * 200

    assert split_reply(text) == Reply("Yes, go ahead.", Cut.HISTORY)


@pytest.mark.parametrize(
    "text",
    [
        "Our hours:\nFrom: 9 am\nTo: 5 pm\n\nOn weekends the phone line stays open for repairs.",
        "This is what they sent me:\n\n"
        f"{OUTLOOK_HEADER}Subject: Invoice 12\n\nYour invoice of 500 EUR is overdue, and the "
        "account will be closed on Friday unless it is paid.",
    ],
    ids=["two-fields-the-sender-typed", "a-mail-pasted-after-a-colon"],
)
def test_a_header_that_may_be_the_senders_keeps_the_whole_text_when_it_would_cut_more(
    text: str,
) -> None:
    assert split_reply(text) == Reply(text, Cut.KEPT_WHOLE)


def test_an_html_reply_below_its_blockquote_is_kept() -> None:
    html = (
        "<div>On Mon, 3 Mar 2025, Acme &lt;sales@crm.test&gt; wrote:</div>"
        "<blockquote>How many people?<br>And when?</blockquote><div>Twelve, in May.</div>"
    )

    parsed = parse_email(make_mail("", html=html, in_reply_to="<m1@crm.test>"))

    assert (parsed.text, parsed.cut, parsed.html_only) == ("Twelve, in May.", Cut.HISTORY, True)


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        ("Grüße".encode("latin-1"), "utf-8", "Grüße"),
        ("Grüße".encode(), "iso-8859-1", "Grüße"),
        ("Grüße".encode(), None, "Grüße"),
        ("Grüße".encode("cp1252"), "x-unknown-charset", "Grüße"),
        ("Привет".encode("koi8-r"), "koi8-r", "Привет"),
        (b"nul\x00byte", "ascii", "nulbyte"),
    ],
    ids=["latin1-as-utf8", "utf8-as-latin1", "missing", "unknown", "declared-right", "nul"],
)
def test_wrong_or_missing_charsets_are_tolerated(
    data: bytes, declared: str | None, expected: str
) -> None:
    assert decode_text(data, declared) == expected


def test_raw_8_bit_headers_are_decoded() -> None:
    raw = (
        b"From: J\xfcrgen <Juergen@Prospect.TEST>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nHallo\r\n"
    )
    parsed = parse_email(raw)

    assert (parsed.from_name, parsed.from_address) == ("Jürgen", "juergen@prospect.test")
    assert parsed.subject == "Grüße"


def test_attachments_are_described_but_not_the_body_or_its_alternative() -> None:
    raw = make_mail(
        "See attached",
        html="<p>See attached</p>",
        attachments=(
            ("a.pdf", "application/pdf", b"%PDF-1.4 " * 100),
            ("notes.txt", "text/plain", b"a text file"),
        ),
    )
    parsed = parse_email(raw)

    assert [(a.name, a.content_type, a.size) for a in parsed.attachments] == [
        ("a.pdf", "application/pdf", 900),
        ("notes.txt", "text/plain", 11),
    ]


def test_thread_headers_are_read_in_order() -> None:
    parsed = parse_email(
        make_mail(
            "x",
            message_id="<m3@x>",
            in_reply_to="<m2@x>",
            references="<m1@x>  <m2@x> (a comment)",
        )
    )

    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == (
        "<m3@x>",
        "<m2@x>",
        ("<m1@x>", "<m2@x>"),
    )


def test_a_message_without_a_usable_sender_is_not_a_conversation() -> None:
    parsed = parse_email(b"From: undisclosed-recipients:;\r\nSubject: x\r\n\r\nhello\r\n")

    assert parsed.from_address == ""
    assert classify(parsed, OWN).kind is Kind.IGNORE


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\x00\xff\xfe garbage", b"Content-Type: multipart/mixed\r\n\r\n--x"):
        parse_email(raw)


@pytest.mark.parametrize(
    ("headers", "sender", "kind"),
    [
        ({}, "ann@prospect.test", Kind.ANSWER),
        ({"Auto-Submitted": "no"}, "ann@prospect.test", Kind.ANSWER),
        ({"Auto-Submitted": "auto-replied"}, "ann@prospect.test", Kind.AUTO),
        ({"Auto-Submitted": "auto-generated; type=vacation"}, "ann@prospect.test", Kind.AUTO),
        ({"X-Autoreply": "yes"}, "ann@prospect.test", Kind.AUTO),
        ({"X-Autorespond": "Out of office"}, "ann@prospect.test", Kind.AUTO),
        ({"X-Auto-Response-Suppress": "All"}, "ann@prospect.test", Kind.AUTO),
        ({"X-Auto-Response-Suppress": "RN, NRN"}, "ann@prospect.test", Kind.ANSWER),
        ({}, "no-reply@vendor.test", Kind.AUTO),
        ({"Precedence": "bulk"}, "news@vendor.test", Kind.IGNORE),
        ({"Precedence": "junk"}, "news@vendor.test", Kind.IGNORE),
        ({"Precedence": "list"}, "news@vendor.test", Kind.IGNORE),
        ({"List-Id": "<news.vendor.test>"}, "news@vendor.test", Kind.IGNORE),
        ({"List-Unsubscribe": "<mailto:u@vendor.test>"}, "news@vendor.test", Kind.IGNORE),
        ({}, "MAILER-DAEMON@mx.test", Kind.BOUNCE),
        ({}, "postmaster@mx.test", Kind.BOUNCE),
        ({}, OUR_ADDRESS.upper(), Kind.OWN),
    ],
)
def test_the_loop_rules(headers: dict[str, str], sender: str, kind: Kind) -> None:
    parsed = parse_email(make_mail("text", sender=sender, headers=headers))

    verdict = classify(parsed, OWN)

    assert verdict.kind is kind
    assert bool(verdict.reason) is (kind is not Kind.ANSWER)


def test_a_delivery_status_notification_is_a_bounce_with_its_details() -> None:
    raw = (
        b"From: Mail System <bounces@mx.test>\r\nSubject: Undeliverable\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n\r\n"
        b"Final-Recipient: rfc822; ann@prospect.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: sales@crm.test\r\n"
        b"Message-ID: <outbox-7-0123456789ab@crm.test>\r\nSubject: Hi\r\n\r\nHello\r\n--B--\r\n"
    )
    parsed = parse_email(raw)

    assert classify(parsed, OWN).kind is Kind.BOUNCE  # by its report, whatever the sender
    assert parsed.report is not None
    assert parsed.report.original_ids == ("<outbox-7-0123456789ab@crm.test>",)
    assert (parsed.report.status, parsed.report.recipient) == ("5.1.1", "ann@prospect.test")
    assert "User unknown" in parsed.report.diagnostic
