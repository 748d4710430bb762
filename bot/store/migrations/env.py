"""Alembic environment: runs on the connection `bot.store.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.store.models import Base, include_name


def _run(connection: Connection) -> None:
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
