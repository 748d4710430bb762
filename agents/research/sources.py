"""What a research run reads about a prospect: one `Source` per kind of place to read.

A source turns a prospect into passages, each with the URL it was read from (the row's notes
have none). A source the row gives nothing for (no website) yields no passage; one that was
given but could not be read raises `SourceFailed` with the reason, and the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

SourceKind = Literal["notes", "website", "feed"]


class SourceFailed(Exception):
    """A source could not be read; the message says why, for the row's failure line."""


@dataclass(frozen=True, slots=True)
class Prospect:
    """One prospect of a research run, once they are a contact."""

    contact_id: int
    name: str
    email: str
    company: str = ""
    website: str | None = None
    feed: str | None = None
    notes: str = ""

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else "there"


@dataclass(frozen=True, slots=True)
class Passage:
    """Text read about the prospect, with where it was read."""

    source: SourceKind
    url: str | None
    """The page or feed entry it comes from; None for the row's own notes."""
    title: str
    text: str

    @property
    def fetched(self) -> bool:
        """Read from the web: only such passages can ground an opener."""
        return self.url is not None


class Source(Protocol):
    """A place to read about a prospect."""

    name: SourceKind

    async def passages(self, prospect: Prospect) -> list[Passage]:
        """What this source says about `prospect`; [] when the row gives it nothing to read,
        `SourceFailed` when it gives something that cannot be read."""
        ...


@dataclass(frozen=True, slots=True)
class Gathered:
    """Everything the sources gave for one prospect, and what each failed source said."""

    passages: list[Passage]
    problems: list[str]

    @property
    def fetched(self) -> list[Passage]:
        return [p for p in self.passages if p.fetched]


async def gather(sources: list[Source], prospect: Prospect) -> Gathered:
    """Ask every source in turn; a failing one is noted and the rest still read."""
    passages: list[Passage] = []
    problems: list[str] = []
    for source in sources:
        try:
            passages += await source.passages(prospect)
        except SourceFailed as failed:
            problems.append(f"{source.name}: {failed}")
    return Gathered(passages, problems)
