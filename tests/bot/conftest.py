from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.admin import AdminCommands
from tests.support.harness import Harness


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    h = Harness(database_url, default_agent="tester", run_timeout_seconds=5)
    await h.app.start()
    await h.add_agent()
    try:
        yield h
    finally:
        await h.app.aclose()


@pytest.fixture
def admins(harness: Harness) -> AdminCommands:
    return AdminCommands(harness.db, harness.app.audit, harness.app.engine)
