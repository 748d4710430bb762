"""lead scores: score changes, meeting owners and their slots, staff working hours

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types  # noqa: F401 - custom column types are rendered by module path


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "score_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("old_score", sa.Integer(), nullable=False),
        sa.Column("new_score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_score_changes_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_changes")),
    )
    with op.batch_alter_table("score_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_score_changes_contact_id"), ["contact_id"], unique=False
        )

    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch_op.create_index(
            "uq_meetings_owner_slot",
            ["owner", "starts_at"],
            unique=True,
            sqlite_where=sa.text("status = 'booked'"),
            postgresql_where=sa.text("status = 'booked'"),
        )

    with op.batch_alter_table("staff_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hours", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_members", schema=None) as batch_op:
        batch_op.drop_column("hours")

    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("uq_meetings_owner_slot")
        batch_op.drop_column("owner")

    with op.batch_alter_table("score_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_score_changes_contact_id"))

    op.drop_table("score_changes")
