"""calendar: meeting UIDs and sequences, slot rows that forbid overlaps, staff calendar feeds

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import bot.store.types  # noqa: F401 - custom column types are rendered by module path


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SLOT_KEY = timedelta(minutes=15)
"""A frozen copy of `bot.store.availability.SLOT_KEY` at this revision."""


def _keys(starts_at: datetime, minutes: int) -> list[datetime]:
    start = starts_at.replace(tzinfo=UTC) if starts_at.tzinfo is None else starts_at
    start = start.astimezone(UTC)
    key = start - (start - datetime(2000, 1, 1, tzinfo=UTC)) % SLOT_KEY
    end = start + timedelta(minutes=minutes)
    keys = []
    while key < end:
        keys.append(key)
        key += SLOT_KEY
    return keys


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("uq_meetings_owner_slot")
        batch_op.add_column(sa.Column("uid", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("sequence", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("reminded_sequence", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("changed_at", bot.store.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE meetings SET uid = 'meeting-' || CAST(id AS VARCHAR(20)) || '@crmbot', "
        "changed_at = created_at"
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.alter_column("uid", existing_type=sa.String(length=255), nullable=False)
        batch_op.alter_column(
            "changed_at", existing_type=bot.store.types.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.create_index("uq_meetings_uid", ["uid"], unique=True)
        batch_op.create_index("ix_meetings_owner_starts", ["owner", "starts_at"], unique=False)
        batch_op.create_index("ix_meetings_status_starts", ["status", "starts_at"], unique=False)

    slots = op.create_table(
        "meeting_slots",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("slot_start", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("meeting_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_slots_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner", "slot_start", name=op.f("pk_meeting_slots")),
    )
    with op.batch_alter_table("meeting_slots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_meeting_slots_meeting_id"), ["meeting_id"], unique=False
        )
    _reserve_booked(slots)

    with op.batch_alter_table("staff_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("calendar_token", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_staff_members_calendar_token"), ["calendar_token"]
        )


def _reserve_booked(slots: sa.Table) -> None:
    """Slot rows for the meetings booked before this revision (the first of two that already
    overlap keeps the shared quarter hours)."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT id, owner, starts_at, duration_minutes FROM meetings "
            "WHERE status = 'booked' AND owner IS NOT NULL ORDER BY id"
        )
    )
    taken: set[tuple[str, datetime]] = set()
    values = []
    for meeting_id, name, starts_at, minutes in rows:
        owner = " ".join(name.split()).lower()
        if isinstance(starts_at, str):  # SQLite hands back the stored text
            starts_at = datetime.fromisoformat(starts_at)
        for key in _keys(starts_at, minutes):
            if (owner, key) not in taken:
                taken.add((owner, key))
                values.append({"owner": owner, "slot_start": key, "meeting_id": meeting_id})
    if values:
        op.bulk_insert(slots, values)


def downgrade() -> None:
    with op.batch_alter_table("staff_members", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_staff_members_calendar_token"), type_="unique")
        batch_op.drop_column("calendar_token")
        batch_op.drop_column("email")

    with op.batch_alter_table("meeting_slots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meeting_slots_meeting_id"))
    op.drop_table("meeting_slots")

    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_status_starts")
        batch_op.drop_index("ix_meetings_owner_starts")
        batch_op.drop_index("uq_meetings_uid")
        batch_op.drop_column("changed_at")
        batch_op.drop_column("reminded_sequence")
        batch_op.drop_column("sequence")
        batch_op.drop_column("uid")
        batch_op.create_index(
            "uq_meetings_owner_slot",
            ["owner", "starts_at"],
            unique=True,
            sqlite_where=sa.text("status = 'booked'"),
            postgresql_where=sa.text("status = 'booked'"),
        )
