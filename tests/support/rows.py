"""Rows of one table as a test reads them: in the order they were written.

Without an ORDER BY, PostgreSQL returns rows in whatever order its plan yields, which need
not be the order of insertion (SQLite happens to use it); a test that compares a list of
audit events or messages to the order they happened in must ask for that order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.store.db import Database
from bot.store.models import Base


async def rows(db: Database, model: type[Base], *where: Any) -> list[Any]:
    """The rows of `model` matching `where`, by primary key."""
    query = select(model).where(*where).order_by(*model.__mapper__.primary_key)
    async with db.transaction() as session:
        return list((await session.execute(query)).scalars())
