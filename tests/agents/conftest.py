from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agents.research.fetch import Fetcher, FetchLimits
from tests.support.harness import Harness
from tests.support.websites import LocalSite, acme_site


@pytest.fixture
async def lead_harness(database_url: str) -> AsyncIterator[Harness]:
    h = Harness(database_url, default_agent="lead-qualifying", run_timeout_seconds=5)
    await h.app.start()
    try:
        yield h
    finally:
        await h.app.aclose()


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    """The prospect's website of the research tests, on 127.0.0.1."""
    async with acme_site() as running:
        yield running


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    running = Fetcher(FetchLimits(allow_private=True, timeout_seconds=2))
    try:
        yield running
    finally:
        await running.aclose()
