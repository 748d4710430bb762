"""The in-place PostgreSQL reset between tests is exact: what a test wrote is gone (the
append-only audit rows too), the sequences start where the template's do, and a test that
changed the schema gets a new copy of the template instead."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _fresh_postgres
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, turn
from tests.support.pg_reset import Snapshot

_USER = "schemaname NOT IN ('pg_catalog', 'information_schema')"


async def contents(url: str) -> dict[str, object]:
    """Every row of every table (in a stable order) and every sequence's position."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            tables = (
                await connection.execute(
                    text(
                        f"SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
                        f" WHERE {_USER} ORDER BY 1"
                    )
                )
            ).scalars()
            found: dict[str, object] = {}
            for table in list(tables):
                found[table] = await connection.scalar(
                    text(f"SELECT json_agg(t ORDER BY t::text)::text FROM {table} t")
                )
            sequences = await connection.execute(
                text(f"SELECT sequencename, last_value FROM pg_sequences WHERE {_USER} ORDER BY 1")
            )
            found["sequences"] = [tuple(row) for row in sequences]
            return found
    finally:
        await engine.dispose()


@pytest.fixture
def pg(postgres_url: str | None, postgres_snapshot: Snapshot | None) -> tuple[str, Snapshot]:
    if postgres_url is None:
        pytest.skip("needs TEST_DATABASE_URL")
    assert postgres_snapshot is not None
    return postgres_url, postgres_snapshot


async def test_a_reset_database_holds_exactly_what_the_template_holds(
    pg: tuple[str, Snapshot],
) -> None:
    url, snapshot = pg
    await _fresh_postgres(url, snapshot)
    template = make_url(url).set(database=f"{make_url(url).database}_template")
    expected = await contents(template.render_as_string(hide_password=False))
    harness = Harness(url, default_agent="tester")
    await harness.app.start()
    try:
        await harness.add_agent()
        harness.use_model(ScriptedModel(turn("Hello Ann!")))
        await harness.answer("hi")
    finally:
        await harness.app.aclose()
    written = await contents(url)
    assert written["public.audit_events"] is not None and written != expected

    assert await snapshot.restore(url)

    assert await contents(url) == expected


async def test_a_changed_schema_is_not_reset_in_place_but_copied_anew(
    pg: tuple[str, Snapshot],
) -> None:
    url, snapshot = pg
    await _fresh_postgres(url, snapshot)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE INDEX ix_extra ON contacts (name)"))
    finally:
        await engine.dispose()

    assert not await snapshot.restore(url)
    await _fresh_postgres(url, snapshot)

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            extra = await connection.scalar(text("SELECT to_regclass('ix_extra')"))
    finally:
        await engine.dispose()
    assert extra is None
    assert await snapshot.restore(url)
