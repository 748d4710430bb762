"""an index on deals by contact, stage and last activity

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_deals_contact_stage', 'deals', ['contact_id', 'stage', 'last_activity_at']
    )


def downgrade() -> None:
    op.drop_index('ix_deals_contact_stage', table_name='deals')
