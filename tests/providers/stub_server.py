"""A scripted HTTP server on loopback that the real SDKs talk to.

Each test queues the exact responses the API would send (status, JSON body, headers) and then
reads back what the SDK put on the wire. Nothing in the SDK is patched, so the adapter's whole
path (request building, auth headers, response parsing, error classes) is under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP response."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering, to make the client time out."""
    raw: str | None = None
    """Sent as the body instead of `body`, verbatim, still labelled JSON: broken or empty
    answers that no JSON encoder would produce."""


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class StubServer:
    """Answers POSTs to one route pattern from a queue and records every request.

    When the queue is empty the server answers with `fallback` if one is set, otherwise with a
    418 so that an unexpected extra request fails the test loudly instead of hanging.
    """

    def __init__(self, route: str) -> None:
        self.route = route
        self.received: list[Received] = []
        self.fallback: Reply | None = None
        self._queue: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base_url = ""

    def queue(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    def assert_complete(self) -> None:
        assert not self._queue, f"{len(self._queue)} scripted replies were never requested"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.route, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop listening; idempotent, and cuts short any reply still being delayed."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append(
            Received(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=json.loads(raw) if raw else None,
            )
        )
        reply = self._queue.popleft() if self._queue else self.fallback
        if reply is None:
            return web.json_response({"error": "stub queue exhausted"}, status=418)
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        if reply.raw is not None:
            return web.Response(
                text=reply.raw,
                status=reply.status,
                headers=reply.headers,
                content_type="application/json",
            )
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)
