"""Stored agent definitions: the validated spec of each agent, its enabled flag and version.

The store keeps specs as JSON; validating them is the agents package's job (`agents.catalog`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import Database
from bot.store.models import AgentDefinitionRow
from bot.store.types import utcnow


async def get_row(session: AsyncSession, name: str) -> AgentDefinitionRow | None:
    return await session.get(AgentDefinitionRow, name)


async def all_rows(session: AsyncSession) -> list[AgentDefinitionRow]:
    rows = await session.execute(select(AgentDefinitionRow).order_by(AgentDefinitionRow.name))
    return list(rows.scalars())


async def put_spec(
    session: AsyncSession, name: str, spec: dict[str, Any]
) -> tuple[AgentDefinitionRow, bool]:
    """Insert or replace a spec; (row, created). A changed spec bumps the version."""
    row = await get_row(session, name)
    if row is None:
        row = AgentDefinitionRow(name=name, spec=spec, enabled=True, version=1)
        session.add(row)
        created = True
    else:
        created = False
        if row.spec != spec:
            row.spec, row.version, row.updated_at = spec, row.version + 1, utcnow()
    await session.flush()
    return row, created


async def set_enabled(session: AsyncSession, name: str, enabled: bool) -> bool:
    """False when there is no such agent."""
    row = await get_row(session, name)
    if row is None:
        return False
    row.enabled, row.updated_at = enabled, utcnow()
    return True


async def seed(db: Database, specs: dict[str, dict[str, Any]]) -> bool:
    """Store `specs` if the catalog is empty; True if this call stored them.

    Workers starting at once may race: the one whose insert loses finds them stored.
    """
    async with db.transaction() as session:
        if await session.scalar(select(func.count()).select_from(AgentDefinitionRow)):
            return False
    try:
        async with db.transaction() as session:
            for name, spec in specs.items():
                if await get_row(session, name) is None:
                    await put_spec(session, name, spec)
    except IntegrityError:
        return False
    return True
