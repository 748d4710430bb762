"""Passage embeddings for the optional semantic search, and reciprocal rank fusion.

Vectors are stored as float32 bytes, normalised to length 1, one row per chunk and model;
a chunk that changes is replaced (with its embeddings, by the foreign key's cascade) and is
embedded again. A process keeps the vectors of one model in memory (`VectorIndex`) and
reloads them when the stored set changes, which one cheap aggregate query tells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store import kb
from bot.store.kb import Hit
from bot.store.models import KbArticle, KbChunk, KbEmbedding

if TYPE_CHECKING:
    import numpy as np

RRF_K = 60
"""The usual constant of reciprocal rank fusion: ranks far down count for little."""
FUSION_CANDIDATES = 10
"""How many hits each ranking contributes to the fusion."""


async def chunks_to_embed(session: AsyncSession, model: str, limit: int) -> list[tuple[int, str]]:
    """Up to `limit` chunks with no embedding under `model`: (id, heading and text)."""
    embedded = select(KbEmbedding.chunk_id).where(KbEmbedding.model == model)
    query = (
        select(KbChunk.id, KbChunk.heading, KbChunk.text)
        .where(KbChunk.id.not_in(embedded))
        .order_by(KbChunk.id)
        .limit(limit)
    )
    return [(row.id, f"{row.heading}\n{row.text}") for row in await session.execute(query)]


async def put_vectors(session: AsyncSession, model: str, rows: Sequence[tuple[int, bytes]]) -> None:
    session.add_all(KbEmbedding(chunk_id=c, model=model, vector=v) for c, v in rows)
    await session.flush()


async def vectors_version(session: AsyncSession, model: str) -> tuple[int, int]:
    """Changes whenever the stored vectors of `model` do: (how many, sum of their chunk ids)."""
    query = select(func.count(), func.coalesce(func.sum(KbEmbedding.chunk_id), 0)).where(
        KbEmbedding.model == model
    )
    count, total = (await session.execute(query)).one()
    return int(count), int(total)


async def load_vectors(session: AsyncSession, model: str) -> list[tuple[int, bytes]]:
    query = select(KbEmbedding.chunk_id, KbEmbedding.vector).where(KbEmbedding.model == model)
    return [(row.chunk_id, row.vector) for row in await session.execute(query)]


async def hits_of(session: AsyncSession, scored: Sequence[tuple[int, float]]) -> list[Hit]:
    """(chunk id, similarity) pairs as hits, in the given order; vanished chunks are left out."""
    ids = [chunk_id for chunk_id, _ in scored]
    query = (
        select(KbChunk.id, KbChunk.article_id, KbChunk.heading, KbChunk.text, KbArticle.title)
        .add_columns(KbArticle.url)
        .join(KbArticle, KbArticle.id == KbChunk.article_id)
        .where(KbChunk.id.in_(ids))
    )
    rows = {row.id: row for row in await session.execute(query)}
    return [
        Hit(r.article_id, r.title, r.url, r.text, round(max(0.0, similarity), 3), r.heading, r.id)
        for chunk_id, similarity in scored
        if (r := rows.get(chunk_id)) is not None
    ]


def fuse(rankings: Sequence[Sequence[Hit]], limit: int, k: int = RRF_K) -> list[Hit]:
    """Reciprocal rank fusion of ranked hit lists: a chunk's weight is the sum of 1/(k+rank)
    over the lists it is in. A chunk keeps the best score any list gave it (both are 0..1:
    keyword coverage, cosine similarity), so the confidence check reads the same field."""
    weight: dict[int, float] = {}
    best: dict[int, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            weight[hit.chunk_id] = weight.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
            known = best.get(hit.chunk_id)
            if known is None or hit.score > known.score:
                best[hit.chunk_id] = hit if known is None else replace(known, score=hit.score)
    order = sorted(weight, key=lambda chunk_id: (-weight[chunk_id], chunk_id))
    return [best[chunk_id] for chunk_id in order[:limit]]


async def hybrid_search(
    session: AsyncSession,
    query: str,
    limit: int,
    near: tuple[VectorIndex, Sequence[float]] | None,
) -> list[Hit]:
    """Keyword search, fused with the passages nearest to the question's embedding when
    `near` gives them (the process's vectors, the question's vector)."""
    if near is None:
        return await kb.search(session, query, limit)
    index, vector = near
    keyword = await kb.search(session, query, max(limit, FUSION_CANDIDATES))
    nearest = await index.nearest(session, vector, max(limit, FUSION_CANDIDATES))
    return fuse([keyword, nearest], limit)


@dataclass
class _Loaded:
    version: tuple[int, int]
    ids: list[int]
    matrix: np.ndarray


class VectorIndex:
    """The stored vectors of one model, in memory, for nearest-neighbour search."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._loaded: _Loaded | None = None

    async def nearest(
        self, session: AsyncSession, vector: Sequence[float], limit: int
    ) -> list[Hit]:
        """The `limit` passages most similar to `vector` (cosine), most similar first."""
        import numpy as np

        loaded = await self._current(session)
        if not loaded.ids or limit < 1:
            return []
        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0.0 or query.shape[0] != loaded.matrix.shape[1]:
            return []
        similarities = loaded.matrix @ (query / norm)
        top = np.argsort(-similarities)[:limit]
        return await hits_of(session, [(loaded.ids[i], float(similarities[i])) for i in top])

    async def _current(self, session: AsyncSession) -> _Loaded:
        import numpy as np

        version = await vectors_version(session, self.model)
        if self._loaded is None or self._loaded.version != version:
            rows = await load_vectors(session, self.model)
            vectors = [np.frombuffer(blob, dtype="<f4") for _, blob in rows]
            width = vectors[0].shape[0] if vectors else 0
            matrix = np.vstack(vectors) if vectors else np.zeros((0, width), dtype=np.float32)
            self._loaded = _Loaded(version, [chunk_id for chunk_id, _ in rows], matrix)
        return self._loaded


def to_blob(vector: Sequence[float]) -> bytes:
    """A vector as stored: float32, little-endian, length 1."""
    import numpy as np

    array = np.asarray(vector, dtype="<f4")
    norm = float(np.linalg.norm(array))
    return (array / norm if norm else array).astype("<f4").tobytes()
