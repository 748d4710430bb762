"""Agent definitions in the database: import, list, read, change, enable and disable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agents.definition import (
    TEMPLATES_DIR,
    AgentDefinition,
    load_definition_file,
    parse_definition,
    update_field,
)
from bot.core.errors import ConfigurationError, NotFoundError
from bot.store.db import Database
from bot.store.models import AgentDefinitionRow
from bot.store.types import utcnow


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """A definition with its enabled flag and version."""

    definition: AgentDefinition
    enabled: bool
    version: int


def definition_files(path: Path) -> list[Path]:
    """The YAML files `path` names: the file itself, or every *.yaml/*.yml in the directory."""
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise ConfigurationError(f"{path}: no .yaml agent definitions in this directory")
        return files
    if not path.exists():
        raise ConfigurationError(f"{path}: no such file or directory")
    return [path]


async def save(session: AsyncSession, definition: AgentDefinition) -> tuple[StoredAgent, bool]:
    """Insert or replace a definition; (stored, created). Replacing bumps the version."""
    row = await session.get(AgentDefinitionRow, definition.name)
    spec = definition.model_dump(mode="json")
    if row is None:
        row = AgentDefinitionRow(name=definition.name, spec=spec, enabled=True, version=1)
        session.add(row)
        created = True
    else:
        created = False
        if row.spec != spec:
            row.spec, row.version, row.updated_at = spec, row.version + 1, utcnow()
    await session.flush()
    return StoredAgent(definition, row.enabled, row.version), created


async def import_paths(
    session: AsyncSession, paths: Iterable[Path], *, keep_existing: bool = False
) -> list[tuple[str, str]]:
    """Validate every file first, then save them all; one bad file imports nothing.

    Returns (name, "created" | "updated" | "unchanged" | "kept"). With `keep_existing`, an
    agent already in the database is left as it is (an admin may have edited it).
    """
    definitions = [load_definition_file(f) for p in paths for f in definition_files(p)]
    results = []
    for definition in definitions:
        existing = await session.get(AgentDefinitionRow, definition.name)
        if existing is not None and keep_existing:
            results.append((definition.name, "kept"))
            continue
        before = existing.version if existing is not None else None
        stored, created = await save(session, definition)
        status = "created" if created else "unchanged" if stored.version == before else "updated"
        results.append((definition.name, status))
    return results


def _stored(row: AgentDefinitionRow) -> StoredAgent:
    return StoredAgent(parse_definition(row.spec, row.name), row.enabled, row.version)


async def get(session: AsyncSession, name: str) -> StoredAgent:
    row = await session.get(AgentDefinitionRow, name)
    if row is None:
        raise NotFoundError(f"no agent named {name!r} (see `crmbot agent list`)")
    return _stored(row)


async def list_all(session: AsyncSession) -> list[StoredAgent]:
    rows = await session.execute(select(AgentDefinitionRow).order_by(AgentDefinitionRow.name))
    return [_stored(row) for row in rows.scalars()]


async def set_enabled(session: AsyncSession, name: str, enabled: bool) -> None:
    row = await session.get(AgentDefinitionRow, name)
    if row is None:
        raise NotFoundError(f"no agent named {name!r}")
    row.enabled, row.updated_at = enabled, utcnow()


async def set_field(session: AsyncSession, name: str, field: str, value: Any) -> StoredAgent:
    stored = await get(session, name)
    changed, _ = await save(session, update_field(stored.definition, field, value))
    return changed


async def seed_if_empty(db: Database) -> bool:
    """Store the shipped agents if the catalog has none; True if it did.

    Workers starting at once may race: the one whose insert loses finds them stored.
    """
    async with db.transaction() as session:
        if await list_all(session):
            return False
    try:
        async with db.transaction() as session:
            await import_paths(session, [TEMPLATES_DIR], keep_existing=True)
    except IntegrityError:
        return False
    return True
