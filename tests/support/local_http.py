"""A small aiohttp server on 127.0.0.1 for the API stand-ins tests write themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalServer:
    """Serves POST `routes` on a free loopback port; `base_url` ends in `/v1` as the SDKs'
    default base URLs do."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        for path, handler in self.routes.items():
            app.router.add_post(path, handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
