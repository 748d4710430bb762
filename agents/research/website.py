"""The prospect's website as a source: its home page (or the page the row names), as text."""

from __future__ import annotations

import html
import re

from inscriptis import get_text

from agents.research.fetch import Fetcher, Page
from agents.research.sources import Passage, Prospect, SourceFailed, SourceKind

WEB_PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
MAX_PASSAGE_CHARS = 3000
"""Of a page's text, what the writer is given: a home page says what matters at the top."""
MIN_LINE_WORDS = 4
"""Shorter lines are menus, buttons and footers more often than something said."""

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_DESCRIPTION = re.compile(
    r"""<meta\s+[^>]*?name=["']description["'][^>]*?content=["']([^"']*)["']""", re.IGNORECASE
)


class WebsiteSource:
    """Reads the row's `website` through the fetcher (robots.txt, caps and all)."""

    name: SourceKind = "website"

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher

    async def passages(self, prospect: Prospect) -> list[Passage]:
        if not prospect.website:
            return []
        page = await self.fetcher.fetch(prospect.website)
        if page.media_type not in WEB_PAGE_TYPES:
            kind = page.media_type or "of no stated type"
            raise SourceFailed(f"{page.url} is {kind}, not a web page")
        title, text = read_page(page)
        if not text:
            raise SourceFailed(f"{page.url} has no readable text")
        return [Passage("website", page.url, title, text)]


def read_page(page: Page) -> tuple[str, str]:
    """(title, readable text) of a fetched page, the text cut to `MAX_PASSAGE_CHARS`."""
    raw = page.text()
    if page.media_type == "text/plain":
        return "", readable(raw)
    title = _first(_TITLE, raw)
    description = _first(_DESCRIPTION, raw)
    text = readable(get_text(raw))
    if description and description not in text:
        text = readable(f"{description}\n{text}")
    return title, text


def _first(pattern: re.Pattern[str], raw: str) -> str:
    found = pattern.search(raw)
    return " ".join(html.unescape(found.group(1)).split()) if found else ""


def readable(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    """The lines of `text` that say something, whitespace collapsed, at most `limit` chars."""
    kept: list[str] = []
    size = 0
    for line in text.splitlines():
        line = " ".join(line.split())
        if len(line.split()) < MIN_LINE_WORDS:
            continue
        if size + len(line) > limit:
            room = limit - size
            if room > 40:  # a cut line still says something; a stub of one does not
                kept.append(line[: room - 2].rsplit(" ", 1)[0] + " …")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)
