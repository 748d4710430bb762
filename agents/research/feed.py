"""A news feed (RSS or Atom) as a source: its newest entries, each with its own link."""

from __future__ import annotations

import io
import time
from typing import Any

import feedparser
from inscriptis import get_text

from agents.research.fetch import Fetcher
from agents.research.sources import Passage, Prospect, SourceFailed, SourceKind

MAX_ENTRIES = 3
MAX_ENTRY_CHARS = 600


class FeedSource:
    """Reads the row's `feed` through the fetcher, then parses it with feedparser.

    feedparser is given the bytes we fetched, never the URL: it would fetch it itself,
    past robots.txt and our caps."""

    name: SourceKind = "feed"

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher

    async def passages(self, prospect: Prospect) -> list[Passage]:
        if not prospect.feed:
            return []
        page = await self.fetcher.fetch(prospect.feed)
        parsed = feedparser.parse(
            io.BytesIO(page.body),
            response_headers={
                "content-location": page.url,  # the base that relative links resolve against
                "content-type": page.content_type or "application/xml",
            },
        )
        if not parsed.entries:
            if parsed.bozo:
                raise SourceFailed(f"{page.url} is not an RSS or Atom feed")
            raise SourceFailed(f"{page.url}: the feed has no entries")
        newest = sorted(parsed.entries, key=_published, reverse=True)[:MAX_ENTRIES]
        return [p for p in (_passage(entry, page.url) for entry in newest) if p is not None]


def _published(entry: Any) -> float:
    moment = entry.get("published_parsed") or entry.get("updated_parsed")
    return time.mktime(moment) if moment else 0.0


def _passage(entry: Any, feed_url: str) -> Passage | None:
    title = " ".join(str(entry.get("title") or "").split())
    summary = " ".join(get_text(str(entry.get("summary") or "")).split())
    if not title and not summary:
        return None
    link = str(entry.get("link") or "")
    url = link if link.startswith(("http://", "https://")) else feed_url
    text = summary if len(summary) <= MAX_ENTRY_CHARS else summary[: MAX_ENTRY_CHARS - 1] + "…"
    return Passage("feed", url, title, text or title)
