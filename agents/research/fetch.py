"""Fetching for research: polite, capped, and only what the site allows.

- Only http and https; a URL written without a scheme (`acme.example`) is taken as https.
- robots.txt of each origin is read once per run and obeyed for our User-Agent. A 4xx answer
  means the site has no rules; any other failure (a 5xx, a timeout, a refused connection) means
  everything is disallowed, as RFC 9309 says of an unreachable robots.txt.
- A host that resolves to a loopback, private, link-local or otherwise non-public address is
  refused unless `allow_private` (RESEARCH_ALLOW_PRIVATE): a prospects file from outside must
  not make us read the intranet.
- Redirects are followed by hand, at most `max_redirects`, each hop checked like the first.
- At most `max_bytes` of a body are read; the rest is never downloaded.
- One fetch, robots.txt and redirects included, has `timeout_seconds` in all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser

import httpx

from agents.research.sources import SourceFailed
from bot.core.settings import Settings

ROBOTS_MAX_BYTES = 500 * 1024
"""RFC 9309: crawlers must parse at least 500 KiB of a robots.txt; we read that much."""
REDIRECTS = (301, 302, 303, 307, 308)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d)")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How much one fetch may read and take; see the module docstring."""

    user_agent: str = "crmbot-research/0.1"
    max_bytes: int = 1_000_000
    timeout_seconds: float = 10.0
    max_redirects: int = 5
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        return cls(
            user_agent=settings.research_user_agent,
            max_bytes=settings.research_max_bytes,
            timeout_seconds=settings.research_timeout_seconds,
            max_redirects=settings.research_max_redirects,
            allow_private=settings.research_allow_private,
        )


@dataclass(frozen=True, slots=True)
class Page:
    """A body we fetched: the URL it came from after redirects, its type, the bytes read."""

    url: str
    content_type: str
    body: bytes
    truncated: bool
    """The body was longer than the cap: only its start was read."""

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    def text(self) -> str:
        """The body as text: the charset the server named, else the page's own <meta>, else
        UTF-8; bytes that do not decode become U+FFFD rather than an error."""
        charset = _charset(self.content_type) or _meta_charset(self.body) or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip(' "'):
            return value.strip(' "')
    return None


def _meta_charset(body: bytes) -> str | None:
    found = _META_CHARSET.search(body[:4096])
    return found.group(1).decode("ascii") if found else None


def absolute_url(text: str) -> str:
    """`text` as an absolute URL: https:// is assumed when no scheme is written (a colon
    followed by a digit is a port, `acme.example:8080`, not a scheme)."""
    text = text.strip()
    return text if _SCHEME.match(text) else f"https://{text}"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes = b""
    truncated: bool = False


@dataclass(slots=True)
class _Rules:
    """An origin's robots.txt as parsed, or why everything there is disallowed."""

    parser: RobotFileParser
    why_closed: str = ""


@dataclass
class Fetcher:
    """Fetches pages for one research run; shares robots.txt answers across its fetches."""

    limits: FetchLimits
    transport: httpx.AsyncBaseTransport | None = None
    """For tests that want a transport of their own; the real network otherwise."""
    _robots: dict[str, _Rules] = field(default_factory=dict, init=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)
    _client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(
            headers={"User-Agent": self.limits.user_agent},
            follow_redirects=False,  # followed by hand: every hop is checked
            timeout=self.limits.timeout_seconds,
            transport=self.transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> Page:
        """GET `url` within the limits; `SourceFailed` says why not."""
        start = absolute_url(url)
        try:
            async with asyncio.timeout(self.limits.timeout_seconds):
                return await self._follow(start)
        except TimeoutError:
            raise SourceFailed(
                f"{start}: no complete answer within {self.limits.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise SourceFailed(f"{start}: {_describe(error)}") from None
        except httpx.InvalidURL as error:
            raise SourceFailed(f"{start}: not a usable URL ({error})") from None

    async def _follow(self, url: str) -> Page:
        start = url
        for _ in range(self.limits.max_redirects + 1):
            target = httpx.URL(url)
            await self._check_host(target)
            rules = await self._rules_for(target)
            if not rules.parser.can_fetch(self.limits.user_agent, str(target)):
                raise SourceFailed(
                    rules.why_closed
                    or f"robots.txt of {_origin(target)} "
                    f"disallows {target.raw_path.decode() or '/'}"
                )
            answer = await self._get(target, self.limits.max_bytes)
            if answer.status in REDIRECTS:
                url = _redirect_target(target, answer.headers)
                continue
            if answer.status != 200:
                raise SourceFailed(f"{target}: HTTP {answer.status}")
            content_type = answer.headers.get("content-type", "")
            return Page(str(target), content_type, answer.body, answer.truncated)
        raise SourceFailed(f"{start}: more than {self.limits.max_redirects} redirects")

    async def _check_host(self, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise SourceFailed(f"{url}: only http and https URLs are fetched")
        if not url.host:
            raise SourceFailed(f"{url}: no host in the URL")
        if self.limits.allow_private:
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                url.host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as error:
            raise SourceFailed(f"{url.host}: no such host ({error.strerror})") from None
        for *_, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if not address.is_global:
                raise SourceFailed(
                    f"{url.host} is on a private network ({address}); "
                    "RESEARCH_ALLOW_PRIVATE=true allows it"
                )

    async def _rules_for(self, url: httpx.URL) -> _Rules:
        origin = _origin(url)
        async with self._locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._robots:
                self._robots[origin] = await self._read_robots(origin)
            return self._robots[origin]

    async def _read_robots(self, origin: str) -> _Rules:
        parser, url = RobotFileParser(), httpx.URL(f"{origin}/robots.txt")
        try:
            for _ in range(self.limits.max_redirects + 1):
                await self._check_host(url)
                answer = await self._get(url, ROBOTS_MAX_BYTES)
                if answer.status not in REDIRECTS:
                    break
                url = httpx.URL(_redirect_target(url, answer.headers))
        except (httpx.HTTPError, SourceFailed) as error:
            detail = _describe(error) if isinstance(error, httpx.HTTPError) else str(error)
            return _closed(parser, origin, detail)
        if answer.status == 200:
            text = Page(str(url), answer.headers.get("content-type", ""), answer.body, False)
            parser.parse(text.text().splitlines())
        elif 400 <= answer.status < 500:
            parser.parse([])  # no rules: everything may be fetched
        else:
            return _closed(parser, origin, f"HTTP {answer.status}")
        return _Rules(parser)

    async def _get(self, url: httpx.URL, cap: int) -> _Answer:
        """One request; reads at most `cap` bytes of a 200's body and none of any other."""
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                return _Answer(response.status_code, response.headers)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > cap:  # leaving the block closes the connection mid-body
                    return _Answer(200, response.headers, bytes(body[:cap]), True)
            return _Answer(200, response.headers, bytes(body))


def _closed(parser: RobotFileParser, origin: str, detail: str) -> _Rules:
    parser.parse(["User-agent: *", "Disallow: /"])
    return _Rules(
        parser, f"robots.txt of {origin} could not be read ({detail}), so nothing there is fetched"
    )


def _origin(url: httpx.URL) -> str:
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port and url.port != default else ""
    return f"{url.scheme}://{url.host}{port}"


def _redirect_target(url: httpx.URL, headers: httpx.Headers) -> str:
    location = headers.get("location")
    if not location:
        raise SourceFailed(f"{url}: a redirect without a Location")
    return str(url.join(location))


def _describe(error: httpx.HTTPError) -> str:
    detail = str(error) or type(error).__name__
    return detail if len(detail) <= 200 else detail[:199] + "…"
