"""Contacts and deals written by other systems: web forms, CSV imports, events.

A lead is matched to an existing contact by `external_id`, then email, then Telegram id, so the
same record sent twice updates one contact. Writing the same fields again changes nothing: tags
are merged, custom fields are merged, and a field the sender leaves out is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import ConfigurationError
from bot.store.models import Base, ChannelIdentity, Contact, Deal

Change = Literal["created", "updated", "unchanged"]
RefKind = Literal["id", "email", "telegram_id", "external_id"]
REF_KINDS: tuple[RefKind, ...] = ("id", "email", "telegram_id", "external_id")


@dataclass(frozen=True, slots=True)
class ContactRef:
    """How another system names one of our contacts."""

    kind: RefKind
    value: str | int


@dataclass(frozen=True, slots=True)
class LeadFields:
    """What a form or import says about a person; None means "not given, keep ours"."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    telegram_id: int | None = None
    company: str | None = None
    tags: tuple[str, ...] = ()
    owner: str | None = None
    source: str | None = None
    external_id: str | None = None
    timezone: str | None = None
    custom: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DealFields:
    """A deal row of an import: matched to an existing deal by (contact, title)."""

    title: str
    contact_email: str
    owner: str | None = None
    stage: str | None = None
    value: Decimal | None = None
    last_activity_at: datetime | None = None


def normal_email(email: str) -> str:
    return email.strip().lower()


async def find_by_ref(session: AsyncSession, ref: ContactRef) -> Contact | None:
    """The contact `ref` names, or None."""
    match ref.kind:
        case "id":
            return await session.get(Contact, int(ref.value))
        case "email":
            query = select(Contact).where(func.lower(Contact.email) == normal_email(str(ref.value)))
        case "telegram_id":
            query = select(Contact).where(Contact.telegram_user_id == int(ref.value))
        case "external_id":
            query = select(Contact).where(Contact.external_id == str(ref.value))
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def _match(session: AsyncSession, lead: LeadFields) -> Contact | None:
    refs: list[ContactRef] = []
    if lead.external_id:
        refs.append(ContactRef("external_id", lead.external_id))
    if lead.email:
        refs.append(ContactRef("email", lead.email))
    if lead.telegram_id is not None:
        refs.append(ContactRef("telegram_id", lead.telegram_id))
    for ref in refs:
        found = await find_by_ref(session, ref)
        if found is not None:
            return found
    return None


async def upsert_lead(session: AsyncSession, lead: LeadFields) -> tuple[Contact, Change]:
    """Create the contact `lead` describes, or update the one it matches."""
    return await _upsert(session, await _match(session, lead), lead)


async def _upsert(
    session: AsyncSession, contact: Contact | None, lead: LeadFields
) -> tuple[Contact, Change]:
    """Update `contact` from `lead`, or create it when None."""
    created = contact is None
    if contact is None:
        contact = Contact(name="", tags=[], custom_fields={})
        session.add(contact)
    changed = _apply(contact, lead)
    await session.flush()
    await _ensure_identities(session, contact)
    if created:
        return contact, "created"
    return contact, "updated" if changed else "unchanged"


def _apply(contact: Contact, lead: LeadFields) -> bool:
    """Copy what `lead` gives onto `contact`; True if anything changed."""
    before = _snapshot(contact)
    scalar = {
        "name": lead.name,
        "email": normal_email(lead.email) if lead.email else None,
        "phone": lead.phone,
        "telegram_user_id": lead.telegram_id,
        "owner": lead.owner,
        "lead_source": lead.source,
        "external_id": lead.external_id,
        "timezone": lead.timezone,
    }
    for name, value in scalar.items():
        if value not in (None, ""):
            setattr(contact, name, value)
    if not contact.name:
        contact.name = contact.email or str(contact.telegram_user_id or "")
    tags = list(contact.tags or [])
    contact.tags = tags + [t for t in dict.fromkeys(lead.tags) if t and t not in tags]
    custom = dict(contact.custom_fields or {})
    if lead.company:
        custom["company"] = lead.company
    custom.update({k: v for k, v in lead.custom.items() if v != ""})
    contact.custom_fields = custom
    return _snapshot(contact) != before


def _snapshot(contact: Contact) -> tuple[object, ...]:
    return (
        contact.name,
        contact.email,
        contact.phone,
        contact.telegram_user_id,
        contact.owner,
        contact.lead_source,
        contact.external_id,
        contact.timezone,
        tuple(contact.tags or ()),
        tuple(sorted((contact.custom_fields or {}).items())),
    )


async def _ensure_identities(session: AsyncSession, contact: Contact) -> None:
    """The addresses we can reach the contact at: email always; a Telegram user id only works
    once they have written to the bot (Telegram lets no bot start a conversation)."""
    wanted = []
    if contact.email:
        wanted.append(("email", contact.email))
    if contact.telegram_user_id is not None:
        wanted.append(("telegram", str(contact.telegram_user_id)))
    for channel, address in wanted:
        query = select(ChannelIdentity.contact_id).where(
            ChannelIdentity.channel == channel, ChannelIdentity.address == address
        )
        if (await session.execute(query)).first() is None:
            session.add(ChannelIdentity(contact_id=contact.id, channel=channel, address=address))
    await session.flush()


async def upsert_deal(session: AsyncSession, deal: DealFields) -> tuple[Deal, Change]:
    """Create or update the deal titled `deal.title` of the contact with `contact_email`.

    Raises LookupError when no contact has that email (import contacts first).
    """
    contact = await find_by_ref(session, ContactRef("email", deal.contact_email))
    if contact is None:
        raise LookupError(f"no contact with email {deal.contact_email}")
    query = select(Deal).where(Deal.contact_id == contact.id, Deal.title == deal.title)
    row = (await session.execute(query.limit(1))).scalar_one_or_none()
    created = row is None
    if row is None:
        row = Deal(contact_id=contact.id, title=deal.title)
        session.add(row)
    before = (row.owner, row.stage, row.value, row.last_activity_at)
    for name in ("owner", "stage", "value", "last_activity_at"):
        value = getattr(deal, name)
        if value is not None:
            setattr(row, name, value)
    await session.flush()
    if created:
        return row, "created"
    after = (row.owner, row.stage, row.value, row.last_activity_at)
    return row, "unchanged" if after == before else "updated"


# Imports: one row at a time, each in a savepoint


class RowRejected(ConfigurationError):
    """A row of an import that cannot be stored; the message says why."""


def column_length(model: type[Base], column: str) -> int:
    """The most characters `model.column` holds (PostgreSQL refuses more; SQLite would not)."""
    length = getattr(model.__table__.c[column].type, "length", None)
    assert isinstance(length, int), f"{model.__name__}.{column} has no length"
    return length


LEAD_COLUMNS = {
    # A lead's text fields and the contacts column that holds each (for its length).
    "name": "name",
    "email": "email",
    "phone": "phone",
    "owner": "owner",
    "source": "lead_source",
    "external_id": "external_id",
    "timezone": "timezone",
}
_DEAL_COLUMNS = {"title": "title", "owner": "owner", "stage": "stage"}
_UNIQUE_FIELDS = {"telegram_user_id": "telegram_id", "external_id": "external_id", "email": "email"}
"""A unique column of contacts, as the database names it in an error, and as a file does."""


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL (PostgreSQL's text refuses it) and lone surrogates (not encodable as UTF-8)."""


def _check_lengths(values: object, model: type[Base], columns: dict[str, str]) -> None:
    for name, column in columns.items():
        value = getattr(values, name)
        limit = column_length(model, column)
        if isinstance(value, str) and len(value) > limit:
            raise RowRejected(f"{name} is longer than {limit} characters")
        if isinstance(value, str) and UNSTORABLE.search(value):
            raise RowRejected(f"{name} has a NUL or an unpaired surrogate character")
    for key, text in getattr(values, "custom", {}).items():
        if UNSTORABLE.search(f"{key}{text}"):
            raise RowRejected(f"custom field {key!r} has a NUL or an unpaired surrogate")


def _why_refused(error: DBAPIError) -> str:
    text = str(error.orig)
    if isinstance(error, IntegrityError):
        for column, name in _UNIQUE_FIELDS.items():
            if column in text:
                return f"another contact already has this {name}"
    return "the database refused it: " + (text.splitlines() or [""])[0][:200]


async def import_lead(session: AsyncSession, lead: LeadFields) -> Change:
    """`upsert_lead` for one row of an import, in a savepoint of the caller's transaction.

    A row the database refuses (the Telegram id or email of another contact) is undone alone
    and the transaction goes on; RowRejected says why.
    """
    _check_lengths(lead, Contact, LEAD_COLUMNS)
    try:
        async with session.begin_nested():
            contact = await _match(session, lead)
            if contact is not None:
                _check_identity(contact, lead)
            _, change = await _upsert(session, contact, lead)
    except (IntegrityError, DataError) as error:
        raise RowRejected(_why_refused(error)) from None
    return change


def _check_identity(contact: Contact, lead: LeadFields) -> None:
    """RowRejected when the row would make `contact` someone else.

    The other system's own id (`external_id`) is trusted to move a contact to a new email or
    Telegram id. Without it a row matched by one key that gives a different value of another
    key the contact already has (Ann's Telegram id beside a new email) names two people;
    upsert_lead would merge them and overwrite Ann's email, and importing the file again
    would flip the contact back and forth.
    """
    if lead.external_id and contact.external_id == lead.external_id:
        return
    ours: dict[str, object] = {
        "external_id": contact.external_id,
        "email": contact.email.lower() if contact.email else None,
        "telegram_id": contact.telegram_user_id,
    }
    theirs: dict[str, object] = {
        "external_id": lead.external_id,
        "email": normal_email(lead.email) if lead.email else None,
        "telegram_id": lead.telegram_id,
    }
    differ = [k for k, v in theirs.items() if v not in (None, "") and ours[k] not in (None, v)]
    same = [k for k, v in theirs.items() if v not in (None, "") and ours[k] == v]
    if differ and same:
        raise RowRejected(
            f"{same[0]} {theirs[same[0]]} is another contact's, "
            f"whose {differ[0]} is {ours[differ[0]]}"
        )


def _money(value: Decimal) -> Decimal:
    """`value` as the deals table keeps it; RowRejected when it does not fit."""
    column = Deal.__table__.c["value"].type
    precision, scale = getattr(column, "precision", 14), getattr(column, "scale", 6)
    if not value.is_finite() or abs(value) >= Decimal(10) ** (precision - scale):
        raise RowRejected(f"value {value} does not fit (at most {precision - scale} digits)")
    # Rounded as the database would, so importing the same file again finds it unchanged.
    return value.quantize(Decimal(1).scaleb(-scale))


async def import_deal(session: AsyncSession, deal: DealFields) -> Change:
    """`upsert_deal` for one row of an import, in a savepoint of the caller's transaction;
    RowRejected when its contact is unknown or the database refuses it."""
    _check_lengths(deal, Deal, _DEAL_COLUMNS)
    if deal.value is not None:
        deal = replace(deal, value=_money(deal.value))
    try:
        async with session.begin_nested():
            _, change = await upsert_deal(session, deal)
    except LookupError:
        raise RowRejected(
            f"no contact with email {deal.contact_email} (import the contacts first)"
        ) from None
    except (IntegrityError, DataError) as error:
        raise RowRejected(_why_refused(error)) from None
    return change
