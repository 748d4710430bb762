"""outbox_claimed_at: when each item's last request left, found by recipient

A claim checks the last one to keep a channel's spacing (one message a second to a Telegram
private chat) across every worker.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("claimed_at", bot.store.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_outbox_recipient_claimed", "outbox", ["channel", "recipient", "claimed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_recipient_claimed", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_at")
