"""Research fetching: robots.txt obeyed, sizes, times and redirects capped, only the web."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from agents.research.fetch import Fetcher, FetchLimits, absolute_url
from agents.research.sources import SourceFailed
from tests.support.websites import LocalSite, Page, acme_site

LIMITS = FetchLimits(allow_private=True, max_bytes=50_000, timeout_seconds=1.0, max_redirects=3)


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with acme_site() as running:
        yield running


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    running = Fetcher(LIMITS)
    try:
        yield running
    finally:
        await running.aclose()


async def _failure(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(SourceFailed) as failed:
        await fetcher.fetch(url)
    return str(failed.value)


async def test_a_path_robots_txt_disallows_is_never_requested(
    site: LocalSite, fetcher: Fetcher
) -> None:
    why = await _failure(fetcher, site.url("/private/team"))

    assert why == f"robots.txt of {site.base_url} disallows /private/team"
    assert site.requested("/private/team") == 0
    page = await fetcher.fetch(site.url("/"))  # the rest of the site is allowed
    assert page.url == site.url("/") and b"bakery robots" in page.body


async def test_robots_txt_is_read_once_per_site_with_our_user_agent(
    site: LocalSite, fetcher: Fetcher
) -> None:
    await fetcher.fetch(site.url("/"))
    await fetcher.fetch(site.url("/feed.xml"))

    assert site.requested("/robots.txt") == 1
    assert {r.user_agent for r in site.requests} == {"crmbot-research/0.1"}


async def test_rules_for_our_user_agent_apply_to_us() -> None:
    robots = Page("User-agent: crmbot-research\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    async with acme_site(robots=robots) as site:
        fetcher = Fetcher(LIMITS)
        try:
            why = await _failure(fetcher, site.url("/"))
        finally:
            await fetcher.aclose()

    assert why == f"robots.txt of {site.base_url} disallows /"
    assert site.requested("/") == 0


async def test_a_missing_robots_txt_allows_everything() -> None:
    async with acme_site() as site:
        del site.pages["/robots.txt"]  # a 404
        fetcher = Fetcher(LIMITS)
        try:
            page = await fetcher.fetch(site.url("/private/team"))
        finally:
            await fetcher.aclose()

    assert b"home phone" in page.body


async def test_a_robots_txt_that_fails_closes_the_whole_site() -> None:
    async with acme_site(robots=Page("oops", status=503)) as site:
        fetcher = Fetcher(LIMITS)
        try:
            why = await _failure(fetcher, site.url("/"))
        finally:
            await fetcher.aclose()

    assert why == (
        f"robots.txt of {site.base_url} could not be read (HTTP 503), so nothing there is fetched"
    )
    assert site.requested("/") == 0


async def test_redirects_are_followed_and_each_hop_is_checked(
    site: LocalSite, fetcher: Fetcher
) -> None:
    page = await fetcher.fetch(site.url("/moved"))
    assert page.url == site.url("/")

    why = await _failure(fetcher, site.url("/to-private"))
    assert why == f"robots.txt of {site.base_url} disallows /private/team"
    assert site.requested("/private/team") == 0

    why = await _failure(fetcher, site.url("/loop"))
    assert why == f"{site.url('/loop')}: more than 3 redirects"
    assert site.requested("/loop") == 4  # the first request and three redirects


async def test_a_body_over_the_cap_is_cut_at_the_cap(site: LocalSite, fetcher: Fetcher) -> None:
    page = await fetcher.fetch(site.url("/big"))

    assert page.truncated and len(page.body) == LIMITS.max_bytes


async def test_a_slow_site_fails_within_the_time_cap(site: LocalSite, fetcher: Fetcher) -> None:
    started = time.monotonic()
    why = await _failure(fetcher, site.url("/slow"))

    assert why == f"{site.url('/slow')}: no complete answer within 1 s"
    assert time.monotonic() - started < 2.5


async def test_an_error_status_is_a_failure(site: LocalSite, fetcher: Fetcher) -> None:
    assert await _failure(fetcher, site.url("/nowhere")) == f"{site.url('/nowhere')}: HTTP 404"


@pytest.mark.parametrize("url", ["ftp://files.example/", "file:///etc/passwd", "javascript:x()"])
async def test_only_http_and_https_are_fetched(fetcher: Fetcher, url: str) -> None:
    assert (await _failure(fetcher, url)).endswith("only http and https URLs are fetched")


async def test_hosts_on_private_networks_are_refused_unless_allowed(site: LocalSite) -> None:
    fetcher = Fetcher(FetchLimits())
    try:
        why = await _failure(fetcher, site.url("/"))
    finally:
        await fetcher.aclose()

    assert why == (
        "127.0.0.1 is on a private network (127.0.0.1); RESEARCH_ALLOW_PRIVATE=true allows it"
    )
    assert site.requests == []  # not even robots.txt


@pytest.mark.parametrize(
    ("written", "url"),
    [
        ("acme.example", "https://acme.example"),
        ("acme.example:8080/about", "https://acme.example:8080/about"),
        ("http://acme.example/", "http://acme.example/"),
        ("mailto:ann@acme.example", "mailto:ann@acme.example"),
    ],
)
def test_a_url_without_a_scheme_is_https(written: str, url: str) -> None:
    assert absolute_url(written) == url
