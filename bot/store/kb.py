"""The knowledge base: help articles cut into chunks, and one search over them on both databases.

Each database searches with its own full-text engine (migration 0009 builds them):

- SQLite: the FTS5 table `kb_chunks_fts` over each chunk's heading and text (Porter stemming),
  kept in step with `kb_chunks` by triggers, ranked by `bm25()` with the heading weighted 2:1;
- PostgreSQL: the generated `tsvector` column `kb_chunks.search_vector` (English stemming,
  heading weight A, text weight B) with a GIN index, queried with `websearch_to_tsquery` and
  ranked by `ts_rank` divided by the log of the chunk's length (normalization 1).

A question is turned into its content words (stop words dropped), any of which may match: a
customer's question rarely has every word of the passage that answers it. Hits come in the
engine's order, which ranks best (see bench/kb.py).

Scores. bm25 and ts_rank live on scales of their own (bm25 grows with the corpus, ts_rank is
a small fraction), so neither is shown as the score. A hit's score is the share of the
question's content words its passage contains, each word weighted by how rare it is in the
knowledge base (its inverse document frequency, counted by the same engine):

    score = sum(idf(w) for w in words the passage contains) / sum(idf(w) for all words)
    idf(w) = ln(1 + (N - n(w) + 0.5) / (n(w) + 0.5))   N chunks, n(w) of them contain w

1.0 means the passage has every word of the question; a word the knowledge base has nowhere
(a product it does not cover, a typo) weighs most and pulls every score down. Both databases
count the same words in the same chunks, so a score means the same on either, up to their
stemmers' small differences. The score measures coverage, the order relevance: a lower hit
may score higher than the one above it (use the best score as the confidence).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import TextClause, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import KbArticle, KbChunk
from bot.store.types import utcnow

Change = Literal["added", "updated", "unchanged"]
MAX_TERMS = 16
"""Content words of a question that count; a longer question is cut here."""
TITLE_CHARS, HEADING_CHARS, URL_CHARS = 300, 1000, 1000
"""What the columns hold: a longer title or heading trail is cut, a longer url refused."""
BM25_WEIGHTS = (2.0, 1.0)
"""bm25 column weights on SQLite: heading, text (PostgreSQL weighs them with A and B)."""

# English function words: never a reason for a passage to match. A superset of PostgreSQL's
# `english` stop words, so no word counts on one database that the other ignores.
_STOP_WORDS = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing don down during each few for
    from further had has have having he her here hers herself him himself his how i if in into
    is it its itself just me might more most must my myself no nor not now of off on once only
    or other our ours ourselves out over own please s same shall she should so some such t than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would
    you your yours yourself yourselves hi hello hey thanks thank ll ve re d m get got much
    many want need know tell like doesn didn isn wasn aren weren hasn haven hadn wouldn couldn
    shouldn
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Section:
    """One chunk to store: its heading trail ("Article › Section") and its text."""

    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class ArticleDraft:
    """An article as parsed from a file, ready to store."""

    path: str
    """Its key: the file's absolute path, or any unique name (e.g. for a saved staff answer)."""
    title: str
    url: str | None
    body: str
    content_hash: str
    """Changes whenever the file (or the way it is parsed) does: equal hashes, nothing to do."""
    sections: tuple[Section, ...]


@dataclass(frozen=True, slots=True)
class ArticleSummary:
    """One stored article, for listings."""

    id: int
    path: str
    title: str
    url: str | None
    chunks: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Hit:
    """One passage found by `search`."""

    article_id: int
    title: str
    url: str | None
    passage: str
    score: float
    """0..1, comparable on both databases: see the module's docstring."""
    heading: str
    chunk_id: int


# Writing


async def put_article(session: AsyncSession, draft: ArticleDraft) -> tuple[KbArticle, Change]:
    """Store `draft` under its path: added, updated (new hash: chunks replaced) or unchanged."""
    article = await session.scalar(select(KbArticle).where(KbArticle.path == draft.path))
    if article is not None and article.content_hash == draft.content_hash:
        return article, "unchanged"
    change: Change = "updated"
    if article is None:
        article, change = KbArticle(path=draft.path), "added"
        session.add(article)
    else:
        await session.execute(delete(KbChunk).where(KbChunk.article_id == article.id))
        article.updated_at = utcnow()
    article.title, article.url, article.body = draft.title[:TITLE_CHARS], draft.url, draft.body
    article.content_hash = draft.content_hash
    await session.flush()
    session.add_all(
        KbChunk(article_id=article.id, position=n, heading=s.heading[:HEADING_CHARS], text=s.text)
        for n, s in enumerate(draft.sections)
    )
    await session.flush()
    return article, change


async def remove_missing(session: AsyncSession, root: str, keep: Iterable[str]) -> list[str]:
    """Delete the articles stored under `root` (a path, "/"-separated) whose path is not in
    `keep`: the files deleted since the last import of `root`. Returns their paths, sorted."""
    kept = set(keep)
    base = root.rstrip("/")
    query = select(KbArticle.id, KbArticle.path).where(
        or_(KbArticle.path == base, KbArticle.path.startswith(base + "/", autoescape=True))
    )
    gone = [(id_, path) for id_, path in (await session.execute(query)).all() if path not in kept]
    if gone:
        ids = [id_ for id_, _ in gone]
        # Chunks first and explicitly: SQLite's full-text triggers see every deleted chunk
        # whether or not the connection enforces the foreign key's cascade.
        await session.execute(delete(KbChunk).where(KbChunk.article_id.in_(ids)))
        await session.execute(delete(KbArticle).where(KbArticle.id.in_(ids)))
    return sorted(path for _, path in gone)


# Reading


async def list_articles(session: AsyncSession) -> list[ArticleSummary]:
    """Every stored article with its number of chunks, by title."""
    chunks = (
        select(KbChunk.article_id, func.count().label("n")).group_by(KbChunk.article_id).subquery()
    )
    query = (
        select(KbArticle, func.coalesce(chunks.c.n, 0))
        .outerjoin(chunks, chunks.c.article_id == KbArticle.id)
        .order_by(KbArticle.title, KbArticle.id)
    )
    return [
        ArticleSummary(a.id, a.path, a.title, a.url, int(n), a.updated_at)
        for a, n in (await session.execute(query)).all()
    ]


def query_terms(query: str) -> list[str]:
    """The question's content words, lower case, first occurrence first."""
    words = (w for w in _WORD.findall(query.lower()) if w not in STOP_WORDS and len(w) > 1)
    return list(dict.fromkeys(words))[:MAX_TERMS]


async def search(session: AsyncSession, query: str, limit: int = 5) -> list[Hit]:
    """The `limit` best passages for `query`, best first; none when nothing matches."""
    terms = query_terms(query)
    if not terms or limit < 1:
        return []
    engine = _POSTGRES if session.get_bind().dialect.name == "postgresql" else _SQLITE
    params: dict[str, object] = {f"t{n}": engine.word(t) for n, t in enumerate(terms)}
    params |= {"query": engine.any_of(terms), "k": limit}
    rows = (await session.execute(engine.statement(len(terms)), params)).all()
    return [_hit(row, len(terms)) for row in rows]


def _idf(document_counts: Sequence[int], total: int) -> list[float]:
    return [math.log(1 + (total - n + 0.5) / (n + 0.5)) for n in document_counts]


def _hit(row: Any, n_terms: int) -> Hit:
    """A result row: the chunk's columns, then per term whether it has it, then per term
    how many chunks have it, then the number of chunks."""
    chunk_id, article_id, heading, passage, title, url = row[:6]
    matched, counts, total = row[6 : 6 + n_terms], row[6 + n_terms : -1], row[-1]
    weights = _idf(counts, total)
    found = sum(w for w, m in zip(weights, matched, strict=True) if m)
    score = round(found / sum(weights), 3) if sum(weights) else 0.0
    return Hit(article_id, title, url, passage, score, heading, chunk_id)


# The two engines' statements, one per search. Each returns the best `:k` chunks with, per
# word of the question, whether the chunk has it (m0, m1, ...) and how many chunks have it
# (n0, n1, ...). Words are always bound parameters (t0, t1, ...); only their number shapes
# the SQL.

_RESULT = """
SELECT c.id, c.article_id, c.heading, c.text, a.title, a.url, {columns},
    (SELECT count(*) FROM kb_chunks) AS chunks
FROM best
JOIN kb_chunks c ON c.id = best.id
JOIN kb_articles a ON a.id = c.article_id
ORDER BY best.relevance DESC, c.id
"""


def _sqlite_statement(n_terms: int) -> TextClause:
    # FTS5 counts a word's chunks from its posting list, so each count is its own subquery.
    words = range(n_terms)
    has = "best.id IN (SELECT rowid FROM kb_chunks_fts WHERE kb_chunks_fts MATCH :t{n})"
    count = "(SELECT count(*) FROM kb_chunks_fts WHERE kb_chunks_fts MATCH :t{n})"
    columns = [*(has.format(n=n) for n in words), *(count.format(n=n) for n in words)]
    return text(
        "WITH best AS (SELECT rowid AS id,"
        f" -bm25(kb_chunks_fts, {BM25_WEIGHTS[0]}, {BM25_WEIGHTS[1]}) AS relevance"
        " FROM kb_chunks_fts WHERE kb_chunks_fts MATCH :query"
        " ORDER BY relevance DESC, id LIMIT :k)" + _RESULT.format(columns=", ".join(columns))
    )


def _postgres_statement(n_terms: int) -> TextClause:
    # Every chunk with a word of the question is a match, so a window over the matches
    # (computed before the LIMIT) counts each word's chunks in the one scan that ranks them.
    # The queries are parsed once, in a row of their own, not once per chunk.
    words = range(n_terms)
    queries = ", ".join(f"plainto_tsquery('english', :t{n}) AS q{n}" for n in words)
    has = ", ".join(f"c.search_vector @@ q.q{n} AS m{n}" for n in words)
    counts = ", ".join(
        f"count(*) FILTER (WHERE c.search_vector @@ q.q{n}) OVER () AS n{n}" for n in words
    )
    columns = [*(f"best.m{n}" for n in words), *(f"best.n{n}" for n in words)]
    return text(
        "WITH best AS (SELECT c.id, ts_rank(c.search_vector, q.query, 1) AS relevance,"
        f" {has}, {counts}"
        " FROM kb_chunks c,"
        f" (SELECT websearch_to_tsquery('english', :query) AS query, {queries}) AS q"
        " WHERE c.search_vector @@ q.query"
        " ORDER BY relevance DESC, c.id LIMIT :k)" + _RESULT.format(columns=", ".join(columns))
    )


def _fts5_word(word: str) -> str:
    # A quoted string in an FTS5 query is only ever a phrase, never syntax.
    return '"' + word.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class _Engine:
    statement: Callable[[int], TextClause]
    word: Callable[[str], str]
    or_word: str

    def any_of(self, terms: list[str]) -> str:
        return f" {self.or_word} ".join(self.word(t) for t in terms)


_SQLITE = _Engine(_sqlite_statement, _fts5_word, "OR")
_POSTGRES = _Engine(_postgres_statement, str, "or")
