"""audit chains per conversation, with periodic seals, instead of one global head row

Revision ID: 0005
Revises: 0004

Rows written so far keep their hashes and become the chain `global` (seq = their id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types  # noqa: F401 - custom column types are rendered by module path


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
When = bot.store.types.UTCDateTime(timezone=True)
GENESIS = "0" * 64
PROTECTED = ('audit_events', 'audit_seals')


def _guards(table: str, dialect: str) -> list[str]:
    if dialect == 'sqlite':
        return [
            f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
            for verb in ('UPDATE', 'DELETE')
        ]
    return [
        f"""CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION '{table} is append-only'; END $$ LANGUAGE plpgsql""",
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
    ]


def _unguard(table: str, dialect: str) -> list[str]:
    if dialect == 'sqlite':
        return [f"DROP TRIGGER IF EXISTS {table}_no_{verb}" for verb in ('update', 'delete')]
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"DROP FUNCTION IF EXISTS {table}_append_only()",
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _unguard('audit_events', dialect):
        op.execute(statement)
    op.add_column('audit_events', sa.Column('chain', sa.String(length=80), nullable=True))
    op.add_column('audit_events', sa.Column('seq', sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_events SET chain = 'global', seq = id")
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('chain', existing_type=sa.String(length=80), nullable=False)
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint(op.f('uq_audit_events_chain'), ['chain', 'seq'])
    if dialect == 'postgresql':
        # Ids came from the head row; from now on the database numbers rows itself.
        op.execute("CREATE SEQUENCE IF NOT EXISTS audit_events_id_seq OWNED BY audit_events.id")
        op.execute(
            "SELECT setval('audit_events_id_seq', COALESCE((SELECT max(id) FROM audit_events), 0)"
            " + 1, false)"
        )
        op.execute(
            "ALTER TABLE audit_events ALTER COLUMN id SET DEFAULT nextval('audit_events_id_seq')"
        )
    op.create_table('audit_chains',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('sealed_seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_audit_chains'))
    )
    op.execute(
        "INSERT INTO audit_chains (key, last_seq, last_hash, sealed_seq) "
        "SELECT 'global', last_id, last_hash, 0 FROM audit_head WHERE last_id > 0"
    )
    op.drop_table('audit_head')
    op.create_table('audit_seals',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('created_at', When, nullable=False),
    sa.Column('heads', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_seals'))
    )
    for table in PROTECTED:
        for statement in _guards(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in PROTECTED:
        for statement in _unguard(table, dialect):
            op.execute(statement)
    op.drop_table('audit_seals')
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.execute(f"INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '{GENESIS}')")
    op.drop_table('audit_chains')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_audit_events_chain'), type_='unique')
        batch_op.drop_column('seq')
        batch_op.drop_column('chain')
    for statement in _guards('audit_events', dialect):
        op.execute(statement)
