"""`crmbot research FILE.csv`: read about each prospect and draft an opener for staff to review.

The file is read as `crmbot import contacts` reads one (`bot.app.cli_import`), with three more
columns: `website`, `feed` (an RSS or Atom URL) and `notes`. Each row's prospect is upserted as
a contact tagged `prospect`; `agents.research` does the reading and the drafting. A row that
fails is reported as `row N: reason`; nothing is ever sent from here.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents import catalog
from agents.providers.pool import ProviderPool
from agents.research.fetch import Fetcher, FetchLimits
from agents.research.run import (
    ProspectRow,
    Researcher,
    check_research_agent,
    default_sources,
    writer_for,
)
from bot.app.cli_common import _run, _settings, _with_db
from bot.app.cli_import import Row, Table, contact_fields, read_table
from bot.core.errors import ConfigurationError
from bot.core.redact import Redactor
from bot.core.settings import Settings
from bot.store import staff_members
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.leads import RowRejected

log = logging.getLogger("bot.app.research")
RESEARCH_COLUMNS = ("website", "feed", "notes")
NOT_CONTACT_FIELDS = ("feed", "notes")
"""Read for the research, not kept on the contact (`website` is kept as a custom field)."""
DEFAULT_AGENT = "outbound-research"


def check_prospect_columns(columns: list[str]) -> None:
    """A prospects file needs an email column (openers go by email) and something to read."""
    if "email" not in columns:
        raise ConfigurationError("missing column email: an opener is sent by email")
    if not {"website", "feed"} & set(columns):
        raise ConfigurationError("missing column website or feed: nothing to read about anyone")


def prospect_row(values: dict[str, str], staff: dict[str, str]) -> ProspectRow:
    """A row as the prospect to research; RowRejected when a value is wrong."""
    if not values.get("email"):
        raise RowRejected("no email: an opener is sent by email")
    website, feed = values.get("website") or None, values.get("feed") or None
    if website is None and feed is None:
        raise RowRejected("no website and no feed: nothing to read about them")
    lead = contact_fields({k: v for k, v in values.items() if k not in NOT_CONTACT_FIELDS})
    if lead.owner:
        owner = staff.get(" ".join(lead.owner.split()).lower())
        if owner is None:
            raise RowRejected(f"owner {lead.owner!r} is not a staff member (crmbot staff add)")
        lead = replace(lead, owner=owner)
    return ProspectRow(lead, website, feed, values.get("notes", ""))


@dataclass(slots=True)
class Tally:
    """What a research run did, row by row."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("drafted", "already", "failed"), 0)
    )

    def summary(self) -> str:
        c = self.counts
        line = (
            f"research: {c['drafted']} drafted, {c['already']} drafted before, {c['failed']} failed"
        )
        if c["drafted"]:
            line += "; review them: crmbot drafts list --status pending"
        return line


def _say(line: str) -> None:
    print(line, flush=True)  # above the progress bar: Rich catches sys.stdout on a terminal


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A step function for a progress bar on stderr, shown when stderr is a terminal (every
    row waits on the network, so even a short file is worth a bar)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda: None
        return
    columns = (TextColumn("researching"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(
        *columns, console=console, transient=True, redirect_stdout=sys.stdout.isatty()
    ) as progress:
        task = progress.add_task("research", total=total)
        yield lambda: progress.advance(task)


@asynccontextmanager
async def researcher_for(
    db: Database, settings: Settings, agent_name: str
) -> AsyncIterator[Researcher]:
    """The agent's researcher with its provider and fetcher, closed afterwards."""
    await catalog.seed_if_empty(db)
    async with db.reading() as session:
        stored = await catalog.get(session, agent_name)
    if not stored.enabled:
        raise ConfigurationError(
            f"agent {agent_name} is disabled (crmbot agent enable {agent_name})"
        )
    check_research_agent(stored.definition)
    providers = ProviderPool(settings)
    fetcher = Fetcher(FetchLimits.from_settings(settings))
    try:
        writer = writer_for(stored.definition, providers)
        audit = AuditLog(Redactor(settings.secrets()))
        yield Researcher(db, audit, stored.definition, writer, default_sources(fetcher))
    finally:
        await fetcher.aclose()
        await providers.aclose()


async def research_rows(
    researcher: Researcher, table: Table, staff: dict[str, str], concurrency: int
) -> Tally:
    """Research every row of `table`, `concurrency` at a time."""
    tally, rows = Tally(), iter(table)
    with _progress(table.rows) as step:

        async def worker() -> None:
            for row in rows:  # one iterator for all workers: each row is taken once
                tally.counts[await _one(researcher, row, staff)] += 1
                step()

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    return tally


async def _one(researcher: Researcher, row: Row, staff: dict[str, str]) -> str:
    try:
        if row.problem is not None:
            raise RowRejected(row.problem)
        result = await researcher.research(prospect_row(row.values, staff))
    except RowRejected as rejected:
        _say(f"row {row.line}: {rejected}")
        return "failed"
    except Exception as error:  # one bad row must not stop the others
        log.exception("research of row %s failed", row.line)
        _say(f"row {row.line}: internal error: {type(error).__name__}: {error}")
        return "failed"
    if result.status == "failed":
        _say(f"row {row.line}: {result.detail}")
    return result.status


def research_command(
    path: Annotated[Path, typer.Argument(help="A CSV file with a header line")],
    agent: Annotated[
        str, typer.Option(help="The research agent that drafts the openers")
    ] = DEFAULT_AGENT,
) -> None:
    """Read about each prospect and draft a first-email opener for staff to approve.

    Columns: name, email, company, website, feed (an RSS or Atom URL), notes; and any column
    `crmbot import contacts` takes (owner must be a staff member). Nothing is sent: each draft
    waits for a person (crmbot drafts list, or the buttons in the staff topic).
    """
    settings = _settings("WARNING")

    async def main() -> None:
        table = read_table(path, check_prospect_columns)

        async def work(db: Database) -> None:
            async with db.reading() as session:
                staff = {m.name.lower(): m.name for m in await staff_members.list_all(session)}
            async with researcher_for(db, settings, agent) as researcher:
                tally = await research_rows(researcher, table, staff, settings.research_concurrency)
            _say(tally.summary())

        await _with_db(settings, work)

    _run(main)
