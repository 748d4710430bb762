"""Hostile input, generated: whatever arrives, each parser either accepts it or refuses it
with its own error type and a message for the sender; nothing else escapes.

Each property pairs a generator of the worst inputs we can think of (random JSON, mangled
MIME, random command text, random YAML) with the parser the bot uses on that input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Bot

from agents.definition import parse_definition
from bot.app.cli_import import CONTACT_COLUMNS as CONTACT_FIELDS
from bot.app.cli_import import DEAL_COLUMNS, contact_fields, deal_fields
from bot.app.http_bodies import BadRequest, json_object, lead_fields, read_json
from bot.core.errors import ConfigurationError
from bot.store.leads import RowRejected
from channels.email.parse import parse_email
from channels.telegram.normalize import inbound_from_update
from channels.telegram.updates import MalformedUpdate, parse_update
from scheduler.events import BadEvent, check_event

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOT = Bot("123456:TEST-TOKEN")

# Text as attackers write it: controls, RTL overrides, NUL, lone surrogates, mixed scripts.
PIECES = ["\x00", "\u202e", "\u2066", "\ufeff", "\r\n", "\x1b[31m", "𝕏", "مرحبا", "\ud800"]
NASTY = st.lists(st.text(max_size=30) | st.sampled_from(PIECES), max_size=8).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | NASTY,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(NASTY, children, max_size=5),
    max_leaves=30,
)


def refusal(call: Callable[[], object], *errors: type[Exception]) -> Exception | None:
    """None if `call` accepted its input; the error if it refused it with one of `errors`
    (anything else escapes and fails the test)."""
    try:
        call()
    except errors as error:
        return error
    return None


def _update_like() -> st.SearchStrategy[Any]:
    """Mostly update-shaped dicts with fields of the wrong types, sometimes anything."""
    message = st.fixed_dictionaries(
        {},
        optional={
            "message_id": JSON_VALUES,
            "date": JSON_VALUES,
            "chat": st.dictionaries(st.sampled_from(["id", "type", "title"]), JSON_VALUES),
            "from": st.dictionaries(st.sampled_from(["id", "is_bot", "first_name"]), JSON_VALUES),
            "text": JSON_VALUES,
            "entities": JSON_VALUES,
        },
    )
    update = st.fixed_dictionaries(
        {"update_id": st.integers() | JSON_VALUES},
        optional={"message": message | JSON_VALUES, "callback_query": JSON_VALUES},
    )
    return update | JSON_VALUES


@SETTINGS
@given(_update_like())
def test_a_telegram_update_is_read_or_refused_as_malformed(raw: Any) -> None:
    parsed: list[Any] = []
    error = refusal(lambda: parsed.append(parse_update(raw, BOT)), MalformedUpdate)
    assert error is None or str(error)  # the dead letter says why
    for update in parsed:
        inbound_from_update(update)  # whatever it holds, turning it into a message cannot fail


@SETTINGS
@given(
    st.binary(max_size=2000)
    | st.builds(
        lambda headers, body, cut: _mime(headers, body)[:cut],
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "From",
                        "Subject",
                        "Content-Type",
                        "To",
                        "Content-Transfer-Encoding",
                        "Message-ID",
                    ]
                ),
                NASTY,
            ),
            max_size=6,
        ),
        NASTY,
        st.integers(0, 4000),
    )
)
def test_any_bytes_parse_as_an_email(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert isinstance(parsed.text, str) and isinstance(parsed.full_text, str)


def _mime(headers: list[tuple[str, str]], body: str) -> bytes:
    lines = [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")


@SETTINGS
@given(JSON_VALUES | NASTY.map(lambda text: "\n".join([text] * 3)))
def test_an_agent_definition_is_valid_or_refused_naming_a_field(data: Any) -> None:
    error = refusal(lambda: parse_definition(data), ConfigurationError)
    assert error is None or str(error).startswith("agent definition")


@SETTINGS
@given(NASTY)
def test_definition_yaml_text_is_read_or_refused(text: str) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # `load_definition_file` reports it as "cannot read YAML"
    error = refusal(lambda: parse_definition(data), ConfigurationError)
    assert error is None or str(error)


@SETTINGS
@given(st.one_of(NASTY, st.binary(max_size=300), JSON_VALUES.map(json.dumps)))
def test_an_http_body_is_read_or_refused_as_a_bad_request(body: str | bytes) -> None:
    error = refusal(lambda: lead_fields(read_json(body)), BadRequest)
    assert error is None or str(error)


@SETTINGS
@given(JSON_VALUES, JSON_VALUES, JSON_VALUES)
def test_an_event_is_checked_or_refused(type_: Any, data: Any, key: Any) -> None:
    error = refusal(lambda: check_event(type_, data, key), BadEvent)
    assert error is None or str(error)


@SETTINGS
@given(JSON_VALUES)
def test_json_objects_with_unknown_fields_are_refused(value: Any) -> None:
    error = refusal(lambda: json_object(value, "body", frozenset({"type", "data"})), BadRequest)
    assert error is None or "field" in str(error) or "object" in str(error)


CONTACT_COLUMNS = [*CONTACT_FIELDS, "favourite_colour"]  # an unknown column is a custom field


def _row(columns: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """A row as the CSV reader gives it: every column of the checked header, cells stripped."""
    cells = st.lists(NASTY.map(str.strip), min_size=len(columns), max_size=len(columns))
    return cells.map(lambda values: dict(zip(columns, values, strict=True)))


@SETTINGS
@given(_row(CONTACT_COLUMNS), _row(list(DEAL_COLUMNS)))
def test_a_csv_row_is_read_or_rejected_with_a_reason(
    contact: dict[str, str], deal: dict[str, str]
) -> None:
    for error in (
        refusal(lambda: contact_fields(contact), RowRejected),
        refusal(lambda: deal_fields(deal, {"dana": "Dana"}), RowRejected),
    ):
        assert error is None or str(error)


def test_nested_mime_a_thousand_levels_deep_is_still_an_email() -> None:
    inner = EmailMessage()
    inner.set_content("the real question is at the bottom")
    raw = inner.as_bytes()
    for n in range(1000):
        raw = (
            b"Content-Type: multipart/mixed; boundary=b"
            + str(n).encode()
            + b"\r\n\r\n--b"
            + str(n).encode()
            + b"\r\n"
            + raw
            + b"\r\n--b"
            + str(n).encode()
            + b"--\r\n"
        )
    parsed = parse_email(b"From: a@example.com\r\nSubject: deep\r\n" + raw)
    assert isinstance(parsed.text, str)
