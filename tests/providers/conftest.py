"""One fixture per provider: the real adapter and SDK, pointed at a stub of that provider's API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.providers.scenario import MAX_RETRIES, Case
from tests.providers.stub_server import StubServer
from tests.providers.wire import FAST, WIRES


@pytest.fixture(params=list(WIRES))
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    """Parametrized over every provider; narrow it with `parametrize("case", [...], indirect)`."""
    wire = WIRES[request.param]
    server = StubServer(wire.route)
    await server.start()
    provider = wire.build(server.base_url, timeout=5.0, max_retries=MAX_RETRIES, backoff=FAST)
    try:
        yield Case(wire, server, provider)
    finally:
        await provider.aclose()
        await server.close()
