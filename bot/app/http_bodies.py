"""Reading the HTTP API's request bodies: every field checked, every problem named.

What the API accepts is what the store can hold: ids within 64 bits, text without NUL or lone
surrogates, lengths within their columns, finite numbers. A body that breaks any of it is a
`BadRequest` (a 400) that says which field and why.
"""

from __future__ import annotations

import json
import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.errors import ConfigurationError
from bot.store.leads import (
    LEAD_COLUMNS,
    REF_KINDS,
    UNSTORABLE,
    ContactRef,
    LeadFields,
    column_length,
)
from bot.store.models import Contact

MAX_ID = 2**63 - 1
"""Ids are 64-bit in the database; a larger one could never match and PostgreSQL refuses it."""
MAX_TAGS, MAX_TAG_LENGTH = 50, 80
MAX_FIELDS, MAX_FIELD_NAME, MAX_FIELD_VALUE = 50, 80, 1000
EVENT_FIELDS = frozenset({"contact", "type", "data", "id"})
LEAD_TEXT = LEAD_COLUMNS
LEAD_FIELDS = frozenset({*LEAD_TEXT, "telegram_id", "company", "tags", "fields"})


class BadRequest(ConfigurationError):
    """A request body (or a command's argument) that cannot be used; the message says why."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON has no infinity, so it could not be stored
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_storable(value: Any) -> None:
    """Every string (keys too) holds only text both databases can store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and UNSTORABLE.search(item):
            raise BadRequest("text may not contain NUL (\\u0000) or unpaired surrogates")


def read_json(text: str | bytes, what: str = "body") -> Any:
    """Parse JSON that will be stored; `BadRequest` says what is wrong with it."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        detail = str(error) if not isinstance(error, RecursionError) else "nested too deeply"
        raise BadRequest(f"{what} is not JSON: {detail}"[:300]) from None
    _check_storable(value)
    return value


def json_object(value: Any, what: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (use {', '.join(sorted(allowed))})")
    return value


def _positive_id(value: Any, what: str) -> int:
    """An integer id, sent as a JSON number or a string of digits."""
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise BadRequest(f"{what} must be a positive integer")
    return value


def _text(value: Any, what: str, limit: int) -> str | None:
    """A string field: None when absent or empty (the contact keeps what it has)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{what} is longer than {limit} characters")
    return value or None


def _email(value: Any) -> str | None:
    email = _text(value, "email", column_length(Contact, "email"))
    if email is not None and ("@" not in email or any(c.isspace() for c in email)):
        raise BadRequest(f"email {email!r} is not an email address")
    return email


def _external_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a numeric id from another system names the same thing
    return _text(value, "external_id", column_length(Contact, "external_id"))


def contact_ref(value: Any) -> ContactRef:
    """The contact an event names: an object with exactly one of id, email, telegram_id,
    external_id."""
    keys = ", ".join(REF_KINDS)
    if not isinstance(value, dict) or len(value) != 1:
        raise BadRequest(f"contact must be an object with exactly one of {keys}")
    ((kind, given),) = value.items()
    ref_value: str | int | None
    match kind:
        case "id" | "telegram_id":
            ref_value = _positive_id(given, f"contact {kind}")
        case "email":
            ref_value = _email(given)
        case "external_id":
            ref_value = _external_id(given)
        case _:
            raise BadRequest(f"contact has {kind!r}; use exactly one of {keys}")
    if ref_value is None:
        raise BadRequest(f"contact {kind} is empty")
    return ContactRef(kind, ref_value)


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadRequest("tags must be a list of strings or one string separated by ';'")
    tags = tuple(dict.fromkeys(t.strip() for t in value if t.strip()))
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in tags):
        raise BadRequest(f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters")
    return tags


def _custom(value: Any) -> dict[str, str]:
    """Custom fields: names to strings; numbers and booleans are kept as their JSON text."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_FIELDS:
        raise BadRequest(f"fields must be an object of at most {MAX_FIELDS} custom fields")
    custom = {}
    for name, given in value.items():
        if not 0 < len(name) <= MAX_FIELD_NAME:
            raise BadRequest(f"a custom field's name must be 1-{MAX_FIELD_NAME} characters")
        if given is None:
            continue
        if isinstance(given, dict | list):
            raise BadRequest(f"custom field {name!r} must be a string, number or boolean")
        text = given if isinstance(given, str) else json.dumps(given)
        if len(text) > MAX_FIELD_VALUE:
            raise BadRequest(f"custom field {name!r} is longer than {MAX_FIELD_VALUE} characters")
        custom[name] = text
    return custom


def _check_zone(zone: str | None) -> None:
    try:
        if zone is not None:
            ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # 'America' is a directory
        raise BadRequest(
            f"timezone {zone!r} is not an IANA time zone (like Europe/Berlin)"
        ) from None


def lead_fields(body: Any) -> LeadFields:
    """A `POST /contacts` body as the lead it describes."""
    body = json_object(body, "body", LEAD_FIELDS)

    def text(name: str) -> str | None:
        return _text(body.get(name), name, column_length(Contact, LEAD_TEXT[name]))

    telegram_id = body.get("telegram_id")
    lead = LeadFields(
        name=text("name"),
        email=_email(body.get("email")),
        phone=text("phone"),
        telegram_id=None if telegram_id is None else _positive_id(telegram_id, "telegram_id"),
        company=_text(body.get("company"), "company", MAX_FIELD_VALUE),
        tags=_tags(body.get("tags")),
        owner=text("owner"),
        source=text("source"),
        external_id=_external_id(body.get("external_id")),
        timezone=text("timezone"),
        custom=_custom(body.get("fields")),
    )
    if not (lead.email or lead.telegram_id is not None or lead.external_id):
        raise BadRequest("a contact needs an email, a telegram_id or an external_id")
    _check_zone(lead.timezone)
    return lead


def identity_ref(lead: LeadFields) -> ContactRef:
    """The ref that finds the contact `upsert_lead` wrote: it matches by external id, then
    email, then Telegram id, and the contact it wrote has the first of them that is given."""
    if lead.external_id:
        return ContactRef("external_id", lead.external_id)
    if lead.email:
        return ContactRef("email", lead.email)
    assert lead.telegram_id is not None  # lead_fields requires one of the three
    return ContactRef("telegram_id", lead.telegram_id)
