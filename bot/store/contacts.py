"""Finding and creating contacts from the identities channels report."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import NotFoundError
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


async def resolve_contact(session: AsyncSession, identity: Identity) -> Contact:
    """The contact behind `identity`; a new one (and its identity row) if never seen."""
    contact = await find_by_identity(session, identity.channel, identity.address)
    if contact is None and identity.email:
        contact = await _by_email(session, identity.email)
    if contact is None:
        contact = Contact(name=identity.name or identity.address, lead_source=identity.lead_source)
        session.add(contact)
    _absorb(contact, identity)
    await session.flush()
    if await find_by_identity(session, identity.channel, identity.address) is None:
        session.add(
            ChannelIdentity(
                contact_id=contact.id, channel=identity.channel, address=identity.address
            )
        )
        await session.flush()
    return contact


def _absorb(contact: Contact, identity: Identity) -> None:
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
