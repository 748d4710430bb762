from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.harness import Harness


@pytest.fixture
async def lead_harness(database_url: str) -> AsyncIterator[Harness]:
    h = Harness(database_url, default_agent="lead-qualifying", run_timeout_seconds=5)
    await h.app.start()
    try:
        yield h
    finally:
        await h.app.aclose()
