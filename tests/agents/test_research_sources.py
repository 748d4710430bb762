"""Research sources: a website as readable text, a feed's newest entries, the row's notes."""

from __future__ import annotations

import pytest

from agents.research.feed import FeedSource
from agents.research.fetch import Fetcher
from agents.research.notes import NotesSource
from agents.research.sources import Prospect, SourceFailed, gather
from agents.research.website import WebsiteSource
from tests.support.websites import LocalSite


def ann(**where: str) -> Prospect:
    return Prospect(1, "Ann Lee", "ann@acme.test", "Acme", **where)  # type: ignore[arg-type]


async def test_a_website_is_its_title_description_and_sentences_without_menus_or_scripts(
    site: LocalSite, fetcher: Fetcher
) -> None:
    [passage] = await WebsiteSource(fetcher).passages(ann(website=site.url("/")))

    assert passage.source == "website" and passage.url == site.url("/")
    assert passage.title == "Acme Robotics: bakery robots"
    assert passage.text.splitlines() == [
        "Acme Robotics builds robots for small bakeries.",
        "Acme builds bakery robots that knead, shape and bake bread overnight, so small "
        "bakeries open every morning with fresh loaves.",
        "Our ovens learn each recipe from the baker who wrote it, and keep to it to the gram.",
    ]


async def test_a_website_that_is_not_a_page_is_a_failure(site: LocalSite, fetcher: Fetcher) -> None:
    with pytest.raises(SourceFailed) as failed:
        await WebsiteSource(fetcher).passages(ann(website=site.url("/brochure.pdf")))

    assert str(failed.value) == f"{site.url('/brochure.pdf')} is application/pdf, not a web page"


async def test_a_long_page_gives_at_most_the_passage_cap(site: LocalSite, fetcher: Fetcher) -> None:
    [passage] = await WebsiteSource(fetcher).passages(ann(website=site.url("/big")))

    assert 2900 < len(passage.text) <= 3000 and passage.text.endswith("…")


async def test_a_feed_gives_its_newest_entries_first_with_absolute_links(
    site: LocalSite, fetcher: Fetcher
) -> None:
    passages = await FeedSource(fetcher).passages(ann(feed=site.url("/feed.xml")))

    assert [(p.url, p.title) for p in passages] == [
        (site.url("/news/lyon"), "Acme opens a second workshop in Lyon"),
        (site.url("/news/fair"), "Acme joins the Paris bakery fair"),
    ]
    assert passages[0].text == (
        "The Lyon workshop will build forty ovens a month for bakeries in the south."
    )


async def test_a_page_that_is_no_feed_is_a_failure(site: LocalSite, fetcher: Fetcher) -> None:
    with pytest.raises(SourceFailed) as failed:
        await FeedSource(fetcher).passages(ann(feed=site.url("/not-a-feed")))

    assert site.url("/not-a-feed") in str(failed.value)


async def test_one_failing_source_leaves_the_others_and_says_why(
    site: LocalSite, fetcher: Fetcher
) -> None:
    prospect = ann(
        website=site.url("/private/team"), feed=site.url("/feed.xml"), notes="Met at a fair"
    )
    sources = [NotesSource(), WebsiteSource(fetcher), FeedSource(fetcher)]

    gathered = await gather(sources, prospect)  # type: ignore[arg-type]

    assert [p.source for p in gathered.passages] == ["notes", "feed", "feed"]
    assert [p.source for p in gathered.fetched] == ["feed", "feed"]  # notes are not fetched
    assert gathered.problems == [f"website: robots.txt of {site.base_url} disallows /private/team"]


async def test_a_row_without_a_website_or_feed_reads_nothing(fetcher: Fetcher) -> None:
    sources = [NotesSource(), WebsiteSource(fetcher), FeedSource(fetcher)]

    gathered = await gather(sources, ann())  # type: ignore[arg-type]

    assert gathered.passages == [] and gathered.problems == []
