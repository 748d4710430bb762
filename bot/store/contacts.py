"""Finding and creating contacts from the identities channels report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import RowMapping, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import NotFoundError
from bot.store.models import ChannelIdentity, Contact


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent a message, as a channel knows them."""

    channel: str
    address: str
    """The channel's stable address: Telegram chat id, normalized email, console name."""
    name: str = ""
    email: str | None = None
    phone: str | None = None
    telegram_user_id: int | None = None
    telegram_username: str | None = None
    lead_source: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


async def find_by_identity(session: AsyncSession, channel: str, address: str) -> Contact | None:
    query = (
        select(Contact)
        .join(ChannelIdentity, ChannelIdentity.contact_id == Contact.id)
        .where(ChannelIdentity.channel == channel, ChannelIdentity.address == address)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def address_on(session: AsyncSession, contact_id: int, channel: str) -> str | None:
    """The contact's address on `channel` (the newest identity if there are several)."""
    query = (
        select(ChannelIdentity.address)
        .where(ChannelIdentity.contact_id == contact_id, ChannelIdentity.channel == channel)
        .order_by(ChannelIdentity.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def resolve_contact(session: AsyncSession, identity: Identity) -> Contact:
    """The contact behind `identity`; a new one (and its identity row) if never seen."""
    contact = await find_by_identity(session, identity.channel, identity.address)
    if contact is None:
        contact = await _first_sighting(session, identity)
    _absorb(contact, identity)
    await session.flush()
    return contact


async def _first_sighting(session: AsyncSession, identity: Identity) -> Contact:
    """Link a never-seen identity to the contact with its email, or to a new contact."""
    try:
        async with session.begin_nested():
            contact = await _by_email(session, identity.email) if identity.email else None
            if contact is None:
                contact = Contact(
                    name=identity.name or identity.address, lead_source=identity.lead_source
                )
                session.add(contact)
            _absorb(contact, identity)
            await session.flush()
            session.add(
                ChannelIdentity(
                    contact_id=contact.id, channel=identity.channel, address=identity.address
                )
            )
        return contact
    except IntegrityError:
        # Another worker recorded this identity at the same moment (a burst of first messages);
        # the (channel, address) unique constraint kept theirs, so theirs is the contact.
        known = await find_by_identity(session, identity.channel, identity.address)
        if known is None:
            raise
        return known


class ContactDetails(Protocol):
    """The contact fields channels fill in: a `Contact` row, or a batch's copy of one."""

    name: str
    email: str | None
    phone: str | None
    telegram_user_id: int | None
    telegram_username: str | None
    lead_source: str | None


def _absorb(contact: ContactDetails, identity: Identity) -> None:
    """Fill in what the channel tells us without overwriting what staff set."""
    contact.email = contact.email or identity.email
    contact.phone = contact.phone or identity.phone
    contact.telegram_user_id = contact.telegram_user_id or identity.telegram_user_id
    contact.telegram_username = identity.telegram_username or contact.telegram_username
    contact.lead_source = contact.lead_source or identity.lead_source
    if identity.name and contact.name in ("", identity.address):
        contact.name = identity.name


async def _by_email(session: AsyncSession, email: str) -> Contact | None:
    query = select(Contact).where(func.lower(Contact.email) == email.lower())
    return (await session.execute(query)).scalar_one_or_none()


async def get_contact(session: AsyncSession, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError(f"no contact with id {contact_id}")
    return contact


async def find_contact(session: AsyncSession, ref: str) -> Contact | None:
    """A contact by id, email, @username or exact name (case-insensitive)."""
    if ref.isdigit():
        return await session.get(Contact, int(ref))
    if "@" in ref and not ref.startswith("@"):
        return await _by_email(session, ref)
    if ref.startswith("@"):
        query = select(Contact).where(func.lower(Contact.telegram_username) == ref[1:].lower())
    else:
        query = select(Contact).where(func.lower(Contact.name) == ref.lower())
    return (await session.execute(query.limit(1))).scalar_one_or_none()


# Resolving a batch of identities at once (the Telegram intake records up to 100 messages in one
# transaction). `resolve_contact` costs a few round trips per message; this replays the same
# rules in memory and writes the outcome in a few statements per batch.

Key = tuple[str, str]
"""An identity's (channel, address)."""
DETAILS = ("name", "email", "phone", "telegram_user_id", "telegram_username", "lead_source")
_DETAIL_COLUMNS = (Contact.id, *(getattr(Contact, name) for name in DETAILS))


@dataclass(slots=True)
class _Draft:
    """A contact as a batch sees it: loaded from the database (with its id), or still to create."""

    id: int | None
    name: str
    email: str | None = None
    phone: str | None = None
    telegram_user_id: int | None = None
    telegram_username: str | None = None
    lead_source: str | None = None

    @classmethod
    def first_seen(cls, identity: Identity) -> _Draft:
        """A new contact, started as `_first_sighting` starts one."""
        return cls(None, identity.name or identity.address, lead_source=identity.lead_source)

    @property
    def saved_id(self) -> int:
        assert self.id is not None, "the contact has not been inserted yet"
        return self.id

    def details(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DETAILS}


class _Sightings:
    """`resolve_contact` replayed over a batch in memory, so that its writes can be made in bulk.

    Identities are sighted in message order, as one-by-one calls would see them: a later
    identity can link by email to a contact an earlier one created or filled in.
    """

    def __init__(self) -> None:
        self.by_identity: dict[Key, _Draft] = {}
        self.by_email: dict[str, _Draft] = {}
        self.new_identities: dict[Key, _Draft] = {}
        self._loaded: dict[int, _Draft] = {}
        self._as_loaded: dict[int, dict[str, Any]] = {}

    def load(self, row: RowMapping) -> _Draft:
        """The draft of a contact row; one per contact, however many ways it was found."""
        draft = self._loaded.get(row["id"])
        if draft is None:
            draft = _Draft(**{name: row[name] for name in ("id", *DETAILS)})
            self._loaded[row["id"]] = draft
            self._as_loaded[row["id"]] = draft.details()
        return draft

    def sight(self, identity: Identity) -> _Draft:
        key = (identity.channel, identity.address)
        draft = self.by_identity.get(key)
        if draft is None:
            draft = self.by_email.get(identity.email.lower()) if identity.email else None
            if draft is None:
                draft = _Draft.first_seen(identity)
            self.by_identity[key] = self.new_identities[key] = draft
        _absorb(draft, identity)
        if draft.email:
            self.by_email.setdefault(draft.email.lower(), draft)
        return draft

    def created(self) -> list[_Draft]:
        """New contacts, ordered by the identity that started each one.

        A fixed order (not arrival order) keeps two concurrent batches that create the same
        people from locking the unique index entries in opposite orders (a deadlock).
        """
        ordered = (self.new_identities[key] for key in sorted(self.new_identities))
        return list({id(d): d for d in ordered if d.id is None}.values())

    def changed(self) -> list[_Draft]:
        """Loaded contacts the batch filled something in on."""
        return [d for i, d in self._loaded.items() if d.details() != self._as_loaded[i]]


async def resolve_contacts(session: AsyncSession, identities: Sequence[Identity]) -> list[int]:
    """The contact id behind each identity, as calling `resolve_contact` on each in turn gives.

    A constant number of statements, whatever the batch size. When a concurrent transaction
    creates one of these contacts or identities first, this raises IntegrityError: redo the
    batch (in a savepoint) and it finds theirs.
    """
    sightings = _Sightings()
    await _load_by_identity(session, sightings, identities)
    await _load_by_email(session, sightings, identities)
    drafts = [sightings.sight(identity) for identity in identities]
    await _insert_new(session, sightings)
    changed = sightings.changed()
    if changed:
        await session.execute(update(Contact), [{"id": d.id, **d.details()} for d in changed])
    return [draft.saved_id for draft in drafts]


async def _load_by_identity(
    session: AsyncSession, sightings: _Sightings, identities: Sequence[Identity]
) -> None:
    keys = list(dict.fromkeys((i.channel, i.address) for i in identities))
    query = (
        select(ChannelIdentity.channel, ChannelIdentity.address, *_DETAIL_COLUMNS)
        .join(Contact, ChannelIdentity.contact_id == Contact.id)
        .where(tuple_(ChannelIdentity.channel, ChannelIdentity.address).in_(keys))
    )
    for row in (await session.execute(query)).mappings():
        sightings.by_identity[(row["channel"], row["address"])] = sightings.load(row)


async def _load_by_email(
    session: AsyncSession, sightings: _Sightings, identities: Sequence[Identity]
) -> None:
    """Contacts whose email a never-seen identity carries (ignoring case, like `_by_email`)."""
    emails = {
        i.email.lower()
        for i in identities
        if i.email and (i.channel, i.address) not in sightings.by_identity
    }
    if not emails:
        return
    lowered = func.lower(Contact.email)
    query = select(lowered.label("key"), *_DETAIL_COLUMNS).where(lowered.in_(emails))
    for row in (await session.execute(query)).mappings():
        sightings.by_email.setdefault(row["key"], sightings.load(row))


async def _insert_new(session: AsyncSession, sightings: _Sightings) -> None:
    """Insert the new contacts, then every never-seen identity pointing at its contact."""
    created = sightings.created()
    if created:
        returned = await session.scalars(
            insert(Contact).returning(Contact.id), [d.details() for d in created]
        )
        # A multi-row INSERT numbers its rows in VALUES order on SQLite and PostgreSQL; the order
        # of RETURNING rows is what neither promises, hence the sort.
        for draft, contact_id in zip(created, sorted(returned), strict=True):
            draft.id = contact_id
    if sightings.new_identities:
        new = sightings.new_identities
        rows = [
            {"contact_id": new[k].saved_id, "channel": k[0], "address": k[1]} for k in sorted(new)
        ]
        await session.execute(insert(ChannelIdentity), rows)


async def mark_unreachable(session: AsyncSession, contact_id: int) -> None:
    """Note that mail to the contact cannot be delivered (their mailbox does not exist)."""
    contact = await session.get(Contact, contact_id)
    if contact is not None:
        contact.unreachable = True
