"""A prospect's website and news feed on 127.0.0.1, for the research tests.

`LocalSite` serves fixed pages by path (aiohttp, on a free port) and records every request
with its User-Agent. `acme_site()` is a small company site: a home page, a robots.txt that
disallows `/private/`, an RSS feed, a redirect, and pages that are too big, too slow or not
HTML.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Page:
    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    user_agent: str


class LocalSite:
    """Serves `pages` by path; anything else is a 404."""

    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = pages
        self.requests: list[Request] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}{path}"

    def requested(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def __aenter__(self) -> LocalSite:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request(request.path, request.headers.get("User-Agent", "")))
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=404, text="not found")
        if page.delay:
            await asyncio.sleep(page.delay)
        # "{base}" in a text page is the site's own address, known only once it listens.
        text = page.body.replace("{base}", self.base_url) if isinstance(page.body, str) else None
        body = text.encode() if text is not None else page.body
        assert isinstance(body, bytes)
        headers = {"Content-Type": page.content_type, **page.headers}
        return web.Response(status=page.status, body=body, headers=headers)


HOME = """\
<!DOCTYPE html>
<html><head>
<title>Acme Robotics: bakery robots</title>
<meta name="description" content="Acme Robotics builds robots for small bakeries.">
<style>body { font-family: sans-serif }</style>
<script>var tracking = "do not read me";</script>
</head><body>
<nav><a href="/">Home</a> <a href="/about">About</a> <a href="/private/team">Team</a></nav>
<h1>Bread before dawn</h1>
<p>Acme builds bakery robots that knead, shape and bake bread overnight, so small bakeries
open every morning with fresh loaves.</p>
<p>Our ovens learn each recipe from the baker who wrote it, and keep to it to the gram.</p>
<footer>© Acme</footer>
</body></html>
"""
FEED = """\
<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Acme news</title><link>{base}/</link><description>News from Acme</description>
<item>
  <title>Acme joins the Paris bakery fair</title>
  <link>{base}/news/fair</link>
  <pubDate>Mon, 03 Mar 2025 09:00:00 GMT</pubDate>
  <description>Meet our robots at stand 12.</description>
</item>
<item>
  <title>Acme opens a second workshop in Lyon</title>
  <link>/news/lyon</link>
  <pubDate>Tue, 01 Apr 2025 09:00:00 GMT</pubDate>
  <description>&lt;p&gt;The Lyon workshop will build &lt;b&gt;forty ovens&lt;/b&gt; a
  month for bakeries in the south.&lt;/p&gt;</description>
</item>
</channel></rss>
"""
ROBOTS = "User-agent: *\nDisallow: /private/\n"


def acme_site(*, robots: Page | None = None) -> LocalSite:
    """The site of the research tests."""
    return LocalSite(
        {
            "/": Page(HOME),
            "/feed.xml": Page(FEED, content_type="application/rss+xml"),
            "/robots.txt": robots or Page(ROBOTS, content_type="text/plain"),
            "/private/team": Page("<p>Our whole team, with their home phone numbers here.</p>"),
            "/moved": Page(status=301, headers={"Location": "/"}),
            "/to-private": Page(status=302, headers={"Location": "/private/team"}),
            "/loop": Page(status=302, headers={"Location": "/loop"}),
            "/big": Page("<p>" + "Fresh bread every single morning for you. " * 20_000 + "</p>"),
            "/slow": Page(HOME, delay=5),
            "/brochure.pdf": Page(b"%PDF-1.4 ...", content_type="application/pdf"),
            "/not-a-feed": Page("<html><body>no feed here</body></html>"),
        }
    )
