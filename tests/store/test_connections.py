"""PostgreSQL connections: each process stays within its pool, and a server that refuses a
connection is the database's trouble (retried), never the data's (set aside)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.db import Database, is_transient


@pytest.fixture
def pg_url(database_url: str) -> str:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("connection limits are PostgreSQL's: TEST_DATABASE_URL")
    return database_url


async def _admin(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def role_of_one_connection(pg_url: str) -> AsyncIterator[str]:
    """The URL of a role the server lets open one connection at a time."""
    role = f"one_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_url).database
    await _admin(
        pg_url,
        f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1",
        f'GRANT ALL ON DATABASE "{database}" TO {role}',
    )
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        await _admin(
            pg_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f'REVOKE ALL ON DATABASE "{database}" FROM {role}',
            f"DROP ROLE {role}",
        )


async def test_a_process_never_opens_more_connections_than_its_pool(pg_url: str) -> None:
    db = Database(pg_url, pool_size=3)
    peak = 0

    async def transaction() -> None:
        nonlocal peak
        async with db.transaction() as session:
            open_now = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = ''"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
            )
            peak = max(peak, int(open_now or 0) + 1)
            await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(transaction() for _ in range(30)))  # they wait their turn
    finally:
        await db.dispose()
    assert peak <= 3


async def test_a_server_out_of_connections_is_transient_and_a_bad_value_is_not(
    role_of_one_connection: str,
) -> None:
    holder, other = Database(role_of_one_connection), Database(role_of_one_connection)
    try:
        async with holder.transaction() as session:
            await session.execute(text("SELECT 1"))
            with pytest.raises(DBAPIError) as refused:
                async with other.transaction() as second:
                    await second.execute(text("SELECT 1"))
        assert "too many connections" in str(refused.value)
        assert is_transient(refused.value)

        with pytest.raises(DBAPIError) as bad_value:
            async with holder.transaction() as session:
                await session.execute(text("SELECT CAST('twelve' AS integer)"))
        assert "invalid input syntax" in str(bad_value.value)
        assert not is_transient(bad_value.value)
    finally:
        await holder.dispose()
        await other.dispose()
