"""Optional semantic search: passages embedded through the real OpenAI SDK against a local
server speaking the embeddings API, fused with keyword search by reciprocal rank fusion."""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agents.definition import TEMPLATES_DIR
from agents.embeddings import OpenAIEmbedder, Semantic, build_embedder, embed_missing
from agents.kb import import_paths
from agents.messages import ToolResult
from bot.core.errors import ConfigurationError
from bot.core.settings import Settings
from bot.store.kb import Hit
from bot.store.kb_vectors import fuse, hybrid_search
from bot.store.models import KbChunk, KbEmbedding
from tests.support.harness import Harness
from tests.support.local_http import LocalServer
from tests.support.models import ScriptedModel, call, turn

CONCEPTS = (
    {"teammate", "colleague", "coworker", "invite", "member", "seat", "role"},
    {"password", "sign", "locked", "reset", "login"},
    {"invoice", "card", "payment", "billing", "vat"},
    {"telegram", "botfather", "token", "topic"},
)
"""The stand-in model's meaning: words of one concept share a dimension, so a colleague is a
teammate, whatever the words; every other word means nothing to it."""


def embedding(text: str) -> list[float]:
    """A deterministic vector: how often the text names each concept."""
    words = [w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower())]
    return [float(sum(w in concept for w in words)) for concept in CONCEPTS]


class EmbeddingsApi:
    """`POST /v1/embeddings` as OpenAI serves it, floats or base64 as the client asks."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.server = LocalServer({"/v1/embeddings": self._embeddings})

    @property
    def base_url(self) -> str:
        return self.server.base_url

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail_next:
            self.fail_next -= 1
            error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
            return web.json_response(error, status=500)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(inputs):
            vector = embedding(text)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


@pytest.fixture
async def api() -> AsyncIterator[EmbeddingsApi]:
    server = EmbeddingsApi()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def semantic(api: EmbeddingsApi) -> AsyncIterator[Semantic]:
    embedder = OpenAIEmbedder("sk-test", "text-embedding-3-small", base_url=api.base_url, timeout=5)
    try:
        yield Semantic.of(embedder)
    finally:
        await embedder.aclose()


def hit(chunk_id: int, score: float) -> Hit:
    return Hit(chunk_id, f"article {chunk_id}", None, "text", score, "heading", chunk_id)


def test_fusion_ranks_by_reciprocal_rank_and_keeps_the_best_score() -> None:
    keyword = [hit(1, 0.9), hit(2, 0.5), hit(3, 0.4)]
    semantic = [hit(3, 0.8), hit(4, 0.7), hit(1, 0.2)]
    fused = fuse([keyword, semantic], 3)
    # 1: 1/61 + 1/63; 3: 1/63 + 1/61, a tie broken by chunk id; then 2 and 4 (1/62 each).
    assert [h.chunk_id for h in fused] == [1, 3, 2]
    assert [h.score for h in fused] == [0.9, 0.8, 0.5]


def test_embeddings_are_off_by_default_and_need_their_extra_when_on() -> None:
    assert build_embedder(Settings(database_url="sqlite+aiosqlite://")) is None
    embedder = build_embedder(
        Settings(database_url="sqlite+aiosqlite://", kb_embeddings="openai", openai_api_key="k")
    )
    assert embedder is not None and embedder.model == "text-embedding-3-small"


async def test_import_embeds_every_passage_once_and_search_fuses_both_rankings(
    harness: Harness, api: EmbeddingsApi, semantic: Semantic
) -> None:
    await import_paths(harness.db, [TEMPLATES_DIR / "kb"])
    chunks = await harness.rows(KbChunk)

    assert await embed_missing(harness.db, semantic.embedder) == len(chunks)
    assert await embed_missing(harness.db, semantic.embedder) == 0  # nothing new to embed
    assert len(await harness.rows(KbEmbedding)) == len(chunks)
    assert all(r["model"] == "text-embedding-3-small" for r in api.requests)

    question = "Can my coworker hop on?"
    near = await semantic.near(question)
    assert near is not None
    async with harness.db.reading() as session:
        keyword_only = await hybrid_search(session, question, 3, None)
        fused = await hybrid_search(session, question, 3, near)
    assert fused[0].title == "Invite your team and manage roles"
    assert keyword_only == []  # no passage has these words: only the meaning finds it


async def test_search_kb_fuses_in_the_semantic_ranking(
    harness: Harness, api: EmbeddingsApi, semantic: Semantic
) -> None:
    await import_paths(harness.db, [TEMPLATES_DIR / "kb"])
    await embed_missing(harness.db, semantic.embedder)
    harness.app.providers.use_semantic(semantic)
    await harness.add_agent(tools=["search_kb", "send_message", "handoff_to_human"])
    question = "Can my coworker hop on?"
    model = ScriptedModel(
        turn("", call("search_kb", {"query": question}, id="1")),
        turn("", call("search_kb", {"query": question}, id="2")),
        turn("", call("finish")),
    )
    harness.use_model(model)
    before = len(api.requests)

    await harness.answer(question)

    results = [
        json.loads(m.content)
        for m in model.requests[-1].messages
        if isinstance(m, ToolResult) and m.name == "search_kb"
    ]
    assert results[0]["hits"][0]["title"] == "Invite your team and manage roles"
    assert [r["input"] for r in api.requests[before:]] == [[question], [question]]


async def test_a_failing_embeddings_api_leaves_the_search_to_keywords(
    harness: Harness, api: EmbeddingsApi, semantic: Semantic
) -> None:
    await import_paths(harness.db, [TEMPLATES_DIR / "kb"])
    await embed_missing(harness.db, semantic.embedder)
    api.fail_next = 10  # beyond the client's retries
    assert await semantic.near("I forgot my password") is None
    async with harness.db.reading() as session:
        hits = await hybrid_search(session, "I forgot my password", 3, None)
    assert hits[0].title == "Reset your password"


def test_kb_embeddings_without_numpy_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_numpy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "numpy":
            raise ImportError("no numpy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_numpy)
    settings = Settings(database_url="sqlite+aiosqlite://", kb_embeddings="gemini")
    with pytest.raises(ConfigurationError, match=r"crmbot\[embeddings\]"):
        build_embedder(settings)
