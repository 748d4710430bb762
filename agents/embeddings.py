"""Optional semantic knowledge-base search: the provider's embedding API, fused with keywords.

Off by default (`KB_EMBEDDINGS=none`): search is keyword search and needs nothing. With
`openai` or `gemini`, passages are embedded when they are imported, each question is embedded
when search_kb runs, and the two rankings are merged by reciprocal rank fusion
(`bot.store.kb_vectors.fuse`). An embedding call that fails leaves that one search to the
keywords: semantic search makes answers better, never impossible.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.errors import ConfigurationError, ProviderError
from bot.core.settings import Settings
from bot.store.db import Database
from bot.store.kb_vectors import VectorIndex, chunks_to_embed, put_vectors, to_blob

log = logging.getLogger("agents.embeddings")
DEFAULT_MODELS = {"openai": "text-embedding-3-small", "gemini": "text-embedding-004"}
BATCH = 64
"""Passages per embedding request when importing (both APIs accept at least 100)."""


class Embedder(ABC):
    """Texts in, one vector per text out, through a provider's embedding API."""

    name: str
    model: str

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None:
        return None


class OpenAIEmbedder(Embedder):
    name = "openai"

    def __init__(self, api_key: str | None, model: str, *, base_url: str | None, timeout: float):
        import openai

        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=2
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        try:
            response = await self._client.embeddings.create(model=self.model, input=list(texts))
        except openai.OpenAIError as error:
            raise ProviderError(f"openai embeddings: {type(error).__name__}: {error}") from None
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]

    async def aclose(self) -> None:
        await self._client.close()


class GeminiEmbedder(Embedder):
    name = "gemini"

    def __init__(self, api_key: str | None, model: str, *, base_url: str | None, timeout: float):
        from google import genai
        from google.genai import types

        self.model = model
        self._client = genai.Client(
            vertexai=False,
            api_key=api_key,
            http_options=types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000)),
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from google.genai import errors

        contents: list[Any] = list(texts)  # the SDK's list types are invariant
        try:
            response = await self._client.aio.models.embed_content(
                model=self.model, contents=contents
            )
        except errors.APIError as error:
            raise ProviderError(f"gemini embeddings: {error}") from None
        vectors = [list(e.values or []) for e in response.embeddings or []]
        if len(vectors) != len(texts):
            raise ProviderError(f"gemini embeddings: {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def aclose(self) -> None:
        await self._client.aio.aclose()


def build_embedder(settings: Settings) -> Embedder | None:
    """The embedder KB_EMBEDDINGS names, or None for keyword search only."""
    name = settings.kb_embeddings
    if name == "none":
        return None
    try:
        import numpy  # noqa: F401 - the vector math needs it
    except ImportError:
        raise ConfigurationError(
            'KB_EMBEDDINGS needs the embeddings extra: pip install "crmbot[embeddings]"'
        ) from None
    model = settings.kb_embedding_model or DEFAULT_MODELS[name]
    options = {"base_url": settings.base_url(name), "timeout": settings.llm_timeout_seconds}
    if name == "openai":
        return OpenAIEmbedder(settings.api_key("openai"), model, **options)  # type: ignore[arg-type]
    return GeminiEmbedder(settings.api_key("gemini"), model, **options)  # type: ignore[arg-type]


async def embed_missing(db: Database, embedder: Embedder) -> int:
    """Embed every passage that has no vector under the embedder's model; how many were."""
    done = 0
    while True:
        async with db.reading() as session:
            batch = await chunks_to_embed(session, embedder.model, BATCH)
        if not batch:
            return done
        vectors = await embedder.embed([text for _, text in batch])
        async with db.transaction() as session:
            await put_vectors(
                session,
                embedder.model,
                [(chunk_id, to_blob(v)) for (chunk_id, _), v in zip(batch, vectors, strict=True)],
            )
        done += len(batch)


@dataclass
class Semantic:
    """Hybrid search for one process: its embedder, and the vectors it keeps in memory."""

    embedder: Embedder
    index: VectorIndex

    @classmethod
    def of(cls, embedder: Embedder) -> Semantic:
        return cls(embedder, VectorIndex(embedder.model))

    async def query_vector(self, query: str) -> list[float] | None:
        """The question's embedding; None (keyword search only) if the API fails."""
        try:
            [vector] = await self.embedder.embed([query])
        except ProviderError as error:
            log.warning("embedding the question failed; keyword search only: %s", error)
            return None
        return vector

    async def near(self, query: str) -> tuple[VectorIndex, list[float]] | None:
        """What a search needs to fuse in the semantic ranking; None for keywords only."""
        vector = await self.query_vector(query)
        return None if vector is None else (self.index, vector)
