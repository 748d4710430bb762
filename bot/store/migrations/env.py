"""Alembic environment: runs on the connection `bot.store.migrate` hands it."""

from __future__ import annotations

import warnings

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning

from bot.store.models import Base, include_name


def _run(connection: Connection) -> None:
    # A batch migration on SQLite reflects the tables it copies and those they reference;
    # SQLite's reflection cannot read expression indexes (contacts' lower(email)), which the
    # copy does not touch. Said on every fresh start, it would only alarm.
    warnings.filterwarnings(
        "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
    )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `crmbot db upgrade`, which provides the connection")
_run(connection)
