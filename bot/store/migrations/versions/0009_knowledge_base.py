"""knowledge base: articles, chunks and their full-text index; conversation categories

Revision ID: 0009
Revises: 0008

The full-text index is each database's own and not in the models (see
`bot.store.models.include_name`):

- SQLite: an FTS5 table over kb_chunks (external content: it stores only the index), kept in
  step by three triggers. A later migration that rebuilds kb_chunks in batch mode (copy and
  rename) drops the triggers and must create them again.
- PostgreSQL: a generated tsvector column with a GIN index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.types  # noqa: F401 - custom column types are rendered by module path


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SQLITE_FULL_TEXT = (
    "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5(heading, text, content='kb_chunks',"
    " content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kb_chunks_fts_insert AFTER INSERT ON kb_chunks BEGIN"
    " INSERT INTO kb_chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);"
    " END",
    "CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN"
    " INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, heading, text)"
    " VALUES ('delete', old.id, old.heading, old.text);"
    " END",
    "CREATE TRIGGER kb_chunks_fts_update AFTER UPDATE ON kb_chunks BEGIN"
    " INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, heading, text)"
    " VALUES ('delete', old.id, old.heading, old.text);"
    " INSERT INTO kb_chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);"
    " END",
)
POSTGRES_FULL_TEXT = (
    "ALTER TABLE kb_chunks ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(heading, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(text, '')), 'B')) STORED",
    "CREATE INDEX ix_kb_chunks_search_vector ON kb_chunks USING gin (search_vector)",
)


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
        sa.UniqueConstraint("path", name=op.f("uq_kb_articles_path")),
    )
    op.create_table(
        "kb_chunks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "article_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("heading", sa.String(length=1000), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["kb_articles.id"],
            name=op.f("fk_kb_chunks_article_id_kb_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_chunks")),
    )
    with op.batch_alter_table("kb_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_chunks_article_id"), ["article_id"], unique=False)

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(length=40), nullable=True))

    statements = SQLITE_FULL_TEXT if op.get_bind().dialect.name == "sqlite" else POSTGRES_FULL_TEXT
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS kb_chunks_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("category")

    with op.batch_alter_table("kb_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_chunks_article_id"))

    op.drop_table("kb_chunks")  # on PostgreSQL with its tsvector column and GIN index
    op.drop_table("kb_articles")
