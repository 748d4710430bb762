"""Bring a test's PostgreSQL database back to its migrated state between tests.

Recreating the database from a template (DROP DATABASE, CREATE DATABASE ... TEMPLATE) costs
0.3-0.7 s on a small machine, most of it the server writing and syncing files: over some 500
tests, more than the tests themselves take. `Snapshot.restore` does the same in about 40 ms
when it can prove the schema is untouched: it empties every table, puts back the rows
the migrations left (today only `alembic_version`) and sets every sequence where the template
has it. It proves the schema untouched by a fingerprint of the system catalogs: any DDL a test
ran (a dropped index, a dropped schema, a temporary table, a comment) writes catalog rows, so
the fingerprint differs and the caller recreates the database instead. Anything this cannot
restore (a role without the rights to disable triggers, rules, materialized views, a prepared
transaction) makes it decline too, so the fallback is always the exact copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

# PostgreSQL's first OID for user objects: everything below is the server's own.
_FIRST_USER_OID = 16384
# A table this large held more rows than a test normally writes (a few pages' worth).
_FILLED_BYTES = 1 << 20
_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _fingerprint_query(connection: AsyncConnection) -> str:
    """One query hashing where every user object's catalog rows lie and which transaction
    wrote them: DDL inserts, updates or deletes such rows, plain DML and VACUUM do not."""
    catalogs = (
        await connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
                " WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'"
                " AND NOT c.relisshared AND a.attname = 'oid' ORDER BY c.relname"
            )
        )
    ).scalars()
    parts = [
        f"SELECT '{name}:' || oid || ':' || xmin || ':' || ctid AS r"
        f" FROM pg_catalog.{name} WHERE oid >= {_FIRST_USER_OID}"
        for name in catalogs
    ]
    parts += [
        "SELECT 'pg_attribute:' || attrelid || ':' || attnum || ':' || xmin || ':' || ctid"
        f" FROM pg_catalog.pg_attribute WHERE attrelid >= {_FIRST_USER_OID}",
        "SELECT 'pg_depend:' || xmin || ':' || ctid FROM pg_catalog.pg_depend"
        f" WHERE objid >= {_FIRST_USER_OID} OR refobjid >= {_FIRST_USER_OID}",
        "SELECT 'pg_description:' || xmin || ':' || ctid FROM pg_catalog.pg_description"
        f" WHERE objoid >= {_FIRST_USER_OID}",
        "SELECT 'pg_db_role_setting:' || setrole || ':' || array_to_string(setconfig, ',')"
        " FROM pg_catalog.pg_db_role_setting WHERE setdatabase ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())",
        "SELECT 'pg_prepared_xacts:' || gid FROM pg_catalog.pg_prepared_xacts"
        " WHERE database = current_database()",
    ]
    return "SELECT md5(string_agg(r, ' ' ORDER BY r)) FROM (" + " UNION ALL ".join(parts) + ") s"


async def _terminate_others(connection: AsyncConnection) -> None:
    """End every other session on this database (a test's leftovers), as DROP ... WITH (FORCE)
    would; waits for them to exit, so their temporary objects are gone before the check."""
    await connection.execute(
        text(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


@dataclass
class Snapshot:
    """What a freshly migrated database holds besides its schema, and how to restore it."""

    fingerprint: str
    query: str
    """The fingerprint's query (the same on every copy of the template)."""
    reset: str = "SELECT 1"
    """One statement emptying every table and setting every sequence as in the template."""
    seeds: list[tuple[str, str]] = field(default_factory=list)
    """(INSERT statement, the rows as JSON) putting back each row the migrations left."""

    @classmethod
    async def take(cls, url: str) -> Snapshot | None:
        """Read a database fresh from the template; None if restoring in place cannot be
        exact for it (then every test gets a new copy of the template)."""
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                return await cls._read(connection)
        finally:
            await engine.dispose()

    @classmethod
    async def _read(cls, connection: AsyncConnection) -> Snapshot | None:
        async def rows(sql: str) -> list[tuple[object, ...]]:
            return [tuple(row) for row in (await connection.execute(text(sql))).all()]

        unrestorable = await rows(
            # Rules and always-on triggers still act under session_replication_role = replica;
            # a materialized view's contents are not rows DELETE can reset.
            "SELECT 1 FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class"
            f" WHERE w.rulename <> '_RETURN' AND c.oid >= {_FIRST_USER_OID}"
            " UNION ALL SELECT 1 FROM pg_trigger WHERE tgenabled = 'A' AND NOT tgisinternal"
            f" UNION ALL SELECT 1 FROM pg_class WHERE relkind = 'm' AND oid >= {_FIRST_USER_OID}"
        )
        if unrestorable:
            return None
        query = await _fingerprint_query(connection)
        snapshot = cls(str(await connection.scalar(text(query))), query)
        deletes: list[str] = []
        setvals: list[str] = []
        relations = await rows(
            "SELECT c.oid, c.relkind::text, n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind IN ('r', 'p', 'S') AND {_USER_SCHEMAS}"
            " ORDER BY n.nspname, c.relname"
        )
        for oid, kind, schema, name in relations:
            relation = f"{_quote(str(schema))}.{_quote(str(name))}"
            if kind == "S":
                # The OIDs are the template's in every copy of it, and the fingerprint
                # vouches that this is still such a copy.
                [(last, called)] = await rows(f"SELECT last_value, is_called FROM {relation}")
                setvals.append(f"setval({int(str(oid))}, {int(str(last))}, {bool(called)})")
                continue
            deletes.append(f"d{len(deletes)} AS (DELETE FROM {relation})")
            content = await connection.scalar(text(f"SELECT json_agg(t)::text FROM {relation} t"))
            if content is not None:
                insert = await _seed_statement(connection, int(str(oid)), relation)
                snapshot.seeds.append((insert, str(content)))
        if deletes or setvals:
            # Data-modifying WITH clauses all run, read or not: one round trip for them all.
            with_clause = f"WITH {', '.join(deletes)} " if deletes else ""
            snapshot.reset = f"{with_clause}SELECT {', '.join(setvals) or '1'}"
        return snapshot

    async def restore(self, url: str) -> bool:
        """Reset the database at `url` to this snapshot; False (and nothing changed) when its
        schema is no longer the template's or the reset is refused."""
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                await _terminate_others(connection)
                untouched = await connection.scalar(text(self.query)) == self.fingerprint
                await connection.commit()
                if not untouched:
                    return False
                async with connection.begin():
                    await self._reset(connection)
                await _vacuum_filled_tables(connection)
            return True
        except DBAPIError:
            # No such database yet, too few rights for session_replication_role, ...
            return False
        finally:
            await engine.dispose()

    async def _reset(self, connection: AsyncConnection) -> None:
        # Replica mode skips the triggers that keep the audit tables append-only and the
        # foreign-key checks, so the tables can be emptied in any order.
        await connection.execute(text("SET LOCAL session_replication_role = replica"))
        await connection.execute(text(self.reset))
        for insert, content in self.seeds:
            await connection.execute(text(insert), {"rows": content})


async def _vacuum_filled_tables(connection: AsyncConnection) -> None:
    """DELETE leaves a table's pages behind: after a test that wrote thousands of rows, the
    next test's scans would read them all. Vacuuming such tables gives them back (plain
    VACUUM updates the catalogs in place, so the fingerprint stays)."""
    filled = (
        await connection.execute(
            text(
                "SELECT c.oid::regclass::text FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                f" WHERE c.relkind = 'r' AND {_USER_SCHEMAS}"
                f" AND pg_relation_size(c.oid) > {_FILLED_BYTES}"
            )
        )
    ).scalars()
    tables = list(filled)
    await connection.commit()
    if tables:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text(f"VACUUM {', '.join(tables)}"))


async def _seed_statement(connection: AsyncConnection, oid: int, table: str) -> str:
    """INSERT ... SELECT from a JSON array of rows: every column that is not generated."""
    columns = (
        await connection.execute(
            text(
                "SELECT attname FROM pg_attribute WHERE attrelid = :oid AND attnum > 0"
                " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
            ),
            {"oid": oid},
        )
    ).scalars()
    names = ", ".join(_quote(str(name)) for name in columns)
    return (
        f"INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE SELECT {names}"
        f" FROM json_populate_recordset(NULL::{table}, CAST(:rows AS json))"
    )
