"""Agent definitions in the database: import, list, read, change, enable and disable."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.definition import (
    TEMPLATES_DIR,
    AgentDefinition,
    load_definition_file,
    parse_definition,
    update_field,
)
from bot.core.errors import ConfigurationError, NotFoundError
from bot.store import catalog as rows
from bot.store.db import Database, Tx
from bot.store.models import AgentDefinitionRow


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


async def save(session: Tx, definition: AgentDefinition) -> tuple[StoredAgent, bool]:
    """Insert or replace a definition; (stored, created). Replacing bumps the version."""
    row, created = await rows.put_spec(session, definition.name, definition.model_dump(mode="json"))
    return StoredAgent(definition, row.enabled, row.version), created


async def import_paths(
    session: Tx, paths: Iterable[Path], *, keep_existing: bool = False
) -> list[tuple[str, str]]:
    """Validate every file first, then save them all; one bad file imports nothing.

    Returns (name, "created" | "updated" | "unchanged" | "kept"). With `keep_existing`, an
    agent already in the database is left as it is (an admin may have edited it).
    """
    definitions = [load_definition_file(f) for p in paths for f in definition_files(p)]
    results = []
    for definition in definitions:
        existing = await rows.get_row(session, definition.name)
        if existing is not None and keep_existing:
            results.append((definition.name, "kept"))
            continue
        before = existing.version if existing is not None else None
        stored, created = await save(session, definition)
        status = "created" if created else "unchanged" if stored.version == before else "updated"
        results.append((definition.name, status))
    return results


_PARSED: dict[tuple[str, int, str], AgentDefinition] = {}
"""Definitions already validated, by (name, version, spec): routing reads the catalog on
every run, and validating every definition each time costs more than reading them. The spec
is part of the key, so two databases in one process never share an entry by mistake."""
_MAX_PARSED = 1000


def _definition(row: AgentDefinitionRow) -> AgentDefinition:
    key = (row.name, row.version, json.dumps(row.spec, sort_keys=True))
    definition = _PARSED.get(key)
    if definition is None:
        definition = parse_definition(row.spec, row.name)
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        _PARSED[key] = definition
    return definition


def _stored(row: AgentDefinitionRow) -> StoredAgent:
    return StoredAgent(_definition(row), row.enabled, row.version)


async def get(session: Tx, name: str) -> StoredAgent:
    row = await rows.get_row(session, name)
    if row is None:
        raise NotFoundError(f"no agent named {name!r} (see `crmbot agent list`)")
    return _stored(row)


async def list_all(session: Tx) -> list[StoredAgent]:
    return [_stored(row) for row in await rows.all_rows(session)]


async def set_enabled(session: Tx, name: str, enabled: bool) -> None:
    if not await rows.set_enabled(session, name, enabled):
        raise NotFoundError(f"no agent named {name!r}")


async def set_field(session: Tx, name: str, field: str, value: Any) -> StoredAgent:
    stored = await get(session, name)
    changed, _ = await save(session, update_field(stored.definition, field, value))
    return changed


async def seed_if_empty(db: Database) -> bool:
    """Store the shipped agents if the catalog has none; True if it did.

    The templates are validated first, so a broken template fails start-up loudly.
    """
    shipped = [load_definition_file(f) for f in definition_files(TEMPLATES_DIR)]
    return await rows.seed(db, {d.name: d.model_dump(mode="json") for d in shipped})
