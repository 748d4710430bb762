"""Staff members: the people a deal's `owner` names, and where their own messages go.

Names are matched without regard to case (`ann` finds `Ann`), as an import or a command
typed on a phone spells them; the name is stored as it was first added.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import ConfigurationError, NotFoundError
from bot.store.leads import column_length
from bot.store.models import StaffMember

Added = Literal["added", "updated", "unchanged"]
NAME_LENGTH = column_length(StaffMember, "name")


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ConfigurationError("a staff member needs a name")
    if len(cleaned) > NAME_LENGTH:
        raise ConfigurationError(f"a staff member's name has at most {NAME_LENGTH} characters")
    return cleaned


async def find(session: AsyncSession, name: str) -> StaffMember | None:
    """The staff member called `name` (any case), or None."""
    wanted = " ".join(name.split()).lower()
    query = select(StaffMember).where(func.lower(StaffMember.name) == wanted)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def get(session: AsyncSession, name: str) -> StaffMember:
    """The staff member called `name`; NotFoundError when there is none."""
    member = await find(session, name)
    if member is None:
        raise NotFoundError(f"no staff member named {name!r}")
    return member


async def list_all(session: AsyncSession) -> list[StaffMember]:
    """Every staff member, by name."""
    query = select(StaffMember).order_by(func.lower(StaffMember.name))
    return list((await session.execute(query)).scalars())


async def _holder_of(session: AsyncSession, telegram_id: int) -> StaffMember | None:
    query = select(StaffMember).where(StaffMember.telegram_id == telegram_id)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def add(
    session: AsyncSession, name: str, telegram_id: int | None = None
) -> tuple[StaffMember, Added]:
    """Add a staff member; adding an existing name sets its Telegram id instead.

    `telegram_id` None keeps the one they have. ConfigurationError when another member
    already has that Telegram id, or the id is not a Telegram user id.
    """
    cleaned = _clean_name(name)
    if telegram_id is not None and telegram_id <= 0:
        raise ConfigurationError(f"{telegram_id} is not a Telegram user id (a positive number)")
    member = await find(session, cleaned)
    if telegram_id is not None:
        holder = await _holder_of(session, telegram_id)
        if holder is not None and holder is not member:
            raise ConfigurationError(f"Telegram id {telegram_id} is already {holder.name}'s")
    if member is None:
        member = StaffMember(name=cleaned, telegram_id=telegram_id)
        session.add(member)
        await session.flush()
        return member, "added"
    if telegram_id is None or member.telegram_id == telegram_id:
        return member, "unchanged"
    member.telegram_id = telegram_id
    await session.flush()
    return member, "updated"


async def remove(session: AsyncSession, name: str) -> StaffMember:
    """Remove the staff member called `name` (deals keep the name as their owner)."""
    member = await get(session, name)
    await session.delete(member)
    await session.flush()
    return member


async def telegram_id_of(session: AsyncSession, name: str) -> int | None:
    """Where the staff member called `name` gets their own messages.

    None when they have no Telegram id, or no staff member has that name (a deal's owner
    from before staff members were kept): send to the staff group instead.
    """
    member = await find(session, name)
    return member.telegram_id if member is not None else None
