"""Statements that SQLite and PostgreSQL both have but SQLAlchemy builds per dialect."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select, TextClause

from bot.store.models import Base

Insert = postgresql.Insert | sqlite.Insert
SelectT = TypeVar("SelectT", bound=Select[Any])


def dialect_insert(session: AsyncSession, model: type[Base]) -> Insert:
    """`INSERT` with `ON CONFLICT` support, for this session's database.

    SQLite and PostgreSQL spell upserts alike, but SQLAlchemy builds them only from each
    dialect's own `insert`; this is the one place that chooses.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignoring_conflicts(
    session: AsyncSession,
    model: type[Base],
    conflict_columns: list[str],
    index_where: TextClause | None = None,
) -> Any:
    """INSERT ... ON CONFLICT (columns) DO NOTHING on this session's database."""
    return dialect_insert(session, model).on_conflict_do_nothing(
        index_elements=conflict_columns, index_where=index_where
    )


def skipping_locked(session: AsyncSession, query: SelectT) -> SelectT:
    """`query` locking the rows it reads and passing over rows another transaction holds
    (PostgreSQL's `FOR UPDATE SKIP LOCKED`), so it never waits on, or deadlocks with, a
    writer. SQLite runs one writer at a time: there is nothing to skip."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query
