"""one lease table with heartbeats, handled updates, dead letters, outbox posts without a
conversation

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types  # noqa: F401 - custom column types are rendered by module path


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
When = bot.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('expires_at', When, nullable=False),
    sa.Column('acquired_at', When, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_index('ix_leases_owner', 'leases', ['owner'], unique=False)
    op.create_table('handled_updates',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('handled_at', When, nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_handled_updates'))
    )
    op.create_table('dead_letters',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('ref', sa.String(length=300), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('seen', sa.Integer(), nullable=False),
    sa.Column('created_at', When, nullable=False),
    sa.Column('retried_at', When, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_dead_letters_fingerprint'))
    )
    op.create_index('ix_dead_letters_status', 'dead_letters', ['status', 'id'], unique=False)
    # Conversation leases move to `leases`; the poller's "owner|time" cursor rows go too.
    cursors = sa.table('channel_cursors', sa.column('key', sa.String))
    op.execute(cursors.delete().where(cursors.c.key.like('%' + ':poller')))
    op.drop_column('conversations', 'lease_owner')
    op.drop_column('conversations', 'lease_until')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('conversation_id', existing_type=BigId, nullable=True)
        batch_op.alter_column('contact_id', existing_type=BigId, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('contact_id', existing_type=BigId, nullable=False)
        batch_op.alter_column('conversation_id', existing_type=BigId, nullable=False)
    op.add_column('conversations', sa.Column('lease_until', When, nullable=True))
    op.add_column('conversations', sa.Column('lease_owner', sa.String(length=200), nullable=True))
    op.drop_index('ix_dead_letters_status', table_name='dead_letters')
    op.drop_table('dead_letters')
    op.drop_table('handled_updates')
    op.drop_index('ix_leases_owner', table_name='leases')
    op.drop_table('leases')
