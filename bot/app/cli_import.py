"""`crmbot import contacts|deals FILE.csv`: contacts and deals from another system.

Columns are found by their header, in any case and order. A row that cannot be stored is
reported as `row N: reason` (N is its line in the file; the header is line 1) and the rest
go on. Rows are written in transactions of `BATCH` rows, each row in a savepoint of its own
(`bot.store.leads.import_lead`), so a stopped import keeps what it wrote and importing the
same file again changes nothing.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from typing import Annotated, get_args
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents.tools.deals import Stage
from bot.app.cli_common import _run, _settings, _with_db
from bot.core.errors import ConfigurationError
from bot.store import staff_members
from bot.store.db import Database, Tx
from bot.store.leads import (
    Change,
    DealFields,
    LeadFields,
    RowRejected,
    import_deal,
    import_lead,
)

import_cli = typer.Typer(help="Import contacts and deals from CSV files.", no_args_is_help=True)
BATCH = 500
"""Rows per transaction: a long file never holds one huge transaction (or SQLite's lock)."""
PROGRESS_AFTER = 200
"""A progress bar (on a terminal) for files with more rows than this."""
CONTACT_COLUMNS = (
    "name",
    "email",
    "phone",
    "telegram_id",
    "company",
    "tags",
    "owner",
    "source",
    "external_id",
    "timezone",
)
DEAL_COLUMNS = ("title", "contact_email", "owner", "stage", "value", "last_activity_at")
STAGES: tuple[str, ...] = get_args(Stage)
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")
_MAX_ID = 2**63 - 1


# Reading the file


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the file: the line it starts on, its values by column."""

    line: int
    values: dict[str, str]
    problem: str | None = None
    """Why it cannot be read as a row of the table (more values than columns)."""


@dataclass(frozen=True, slots=True)
class Table:
    """A CSV file whose header was checked and whose rows were counted."""

    path: Path
    columns: list[str]
    """The header, lower case and stripped; "" for a column without a name (ignored)."""
    rows: int

    def __iter__(self) -> Iterator[Row]:
        records = _records(self.path)
        next(records)  # the header
        width = len(self.columns)
        for line, cells in records:
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                yield Row(line, {}, f"{len(cells)} values for {width} columns")
                continue
            padded = [c.strip() for c in cells] + [""] * (width - len(cells))
            yield Row(
                line,
                {name: v for name, v in zip(self.columns, padded[:width], strict=True) if name},
            )


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its cells), skipping blank records."""
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: Excel's BOM
            reader = csv.reader(file)
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    yield line, cells
                line = reader.line_num + 1
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: line {line} is not UTF-8 text") from None
    except csv.Error as error:
        raise ConfigurationError(f"{path}: line {line}: {error}") from None


def read_table(path: Path, check: Callable[[list[str]], None]) -> Table:
    """Open `path`, check its header with `check` and count its rows (reading it all once,
    so a file that cannot be read fails before anything is imported)."""
    if not path.is_file():
        raise ConfigurationError(f"no file {path}")
    records = _records(path)
    first = next(records, None)
    if first is None:
        raise ConfigurationError(f"{path} is empty: its first line must name the columns")
    columns = [name.strip().lower() for name in first[1]]
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"{path}: column {repeated[0]} appears more than once")
    check(columns)
    return Table(path, columns, sum(1 for _ in records))


def check_contact_columns(columns: list[str]) -> None:
    """Contacts need an email or a telegram_id column; any other column is a custom field."""
    if "email" not in columns and "telegram_id" not in columns:
        raise ConfigurationError("missing column email (or telegram_id): contacts need one")


def check_deal_columns(columns: list[str]) -> None:
    """Deals need title and contact_email; a column deals do not have is a mistake."""
    for needed in ("title", "contact_email"):
        if needed not in columns:
            raise ConfigurationError(f"missing column {needed}")
    unknown = [name for name in columns if name and name not in DEAL_COLUMNS]
    if unknown:
        raise ConfigurationError(
            f"unknown column {unknown[0]} (deal columns: {', '.join(DEAL_COLUMNS)})"
        )


# One row into fields


def _email(value: str, column: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise RowRejected(f"bad {column} {value!r}")
    return value


def _telegram_id(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= _MAX_ID:
        raise RowRejected(f"bad telegram_id {value!r} (a Telegram user id is a whole number)")
    return int(value)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (LookupError, ValueError, OSError):  # unknown, malformed, or a zone folder
        raise RowRejected(f"unknown timezone {value!r} (an IANA name: Europe/Berlin)") from None
    return value


def contact_fields(values: dict[str, str]) -> LeadFields:
    """A contact row as lead fields; RowRejected when a value is wrong."""
    email, telegram = values.get("email", ""), values.get("telegram_id", "")
    if not email and not telegram:
        raise RowRejected("no email and no telegram_id")
    custom = {k: v for k, v in values.items() if k not in CONTACT_COLUMNS and v}
    tags = tuple(dict.fromkeys(t.strip() for t in values.get("tags", "").split(";") if t.strip()))
    return LeadFields(
        name=values.get("name") or None,
        email=_email(email, "email") if email else None,
        phone=values.get("phone") or None,
        telegram_id=_telegram_id(telegram) if telegram else None,
        company=values.get("company") or None,
        tags=tags,
        owner=values.get("owner") or None,
        source=values.get("source") or None,
        external_id=values.get("external_id") or None,
        timezone=_timezone(values["timezone"]) if values.get("timezone") else None,
        custom=custom,
    )


def _value(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise RowRejected(f"bad value {value!r} (a decimal number, e.g. 1200.50)")
    return number


def _moment(value: str) -> datetime:
    """ISO 8601; a date or a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RowRejected(
            f"bad last_activity_at {value!r} (ISO 8601, e.g. 2024-05-01T14:30:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stage(value: str) -> str:
    stage = value.lower()
    if stage not in STAGES:
        raise RowRejected(f"unknown stage {value!r} (one of {', '.join(STAGES)})")
    return stage


def deal_fields(values: dict[str, str], staff: dict[str, str]) -> DealFields:
    """A deal row as deal fields; `staff` maps lower-case names to staff members' names."""
    title, email, owner = values["title"], values["contact_email"], values.get("owner", "")
    if not title:
        raise RowRejected("no title")
    if not email:
        raise RowRejected("no contact_email")
    if owner and " ".join(owner.split()).lower() not in staff:
        raise RowRejected(f"owner {owner!r} is not a staff member (crmbot staff add)")
    return DealFields(
        title=title,
        contact_email=_email(email, "contact_email"),
        owner=staff[" ".join(owner.split()).lower()] if owner else None,
        stage=_stage(values["stage"]) if values.get("stage") else None,
        value=_value(values["value"]) if values.get("value") else None,
        last_activity_at=_moment(values["last_activity_at"])
        if values.get("last_activity_at")
        else None,
    )


# Writing it


@dataclass(slots=True)
class Tally:
    """What an import did, row by row."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("created", "updated", "unchanged", "rejected"), 0)
    )

    def summary(self, what: str) -> str:
        return f"{what}: " + ", ".join(f"{n} {change}" for change, n in self.counts.items())


StoreRow = Callable[[Tx, dict[str, str]], Awaitable[Change]]


def _say(line: str) -> None:
    # print, not typer.echo: while a progress bar runs on the terminal, Rich catches sys.stdout
    # and prints above the bar.
    print(line, flush=True)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A step function for a progress bar on stderr: shown on a terminal for a long file."""
    console = Console(stderr=True)
    if total <= PROGRESS_AFTER or not console.is_terminal:
        yield lambda: None
        return
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # stdout is only caught when it is the terminal too: a report piped to a file stays there.
    with Progress(
        *columns, console=console, transient=True, redirect_stdout=sys.stdout.isatty()
    ) as progress:
        task = progress.add_task("import", total=total)
        yield lambda: progress.advance(task)


async def import_rows(db: Database, table: Table, store: StoreRow) -> Tally:
    """Store each row of `table` with `store`, `BATCH` rows per transaction."""
    tally, rows = Tally(), iter(table)
    with _progress(table.rows) as step:
        while batch := list(islice(rows, BATCH)):
            async with db.transaction() as session:
                for row in batch:
                    tally.counts[await _one(session, row, store)] += 1
                    step()
    return tally


async def _one(session: Tx, row: Row, store: StoreRow) -> str:
    try:
        if row.problem is not None:
            raise RowRejected(row.problem)
        return await store(session, row.values)
    except RowRejected as rejected:
        _say(f"row {row.line}: {rejected}")
        return "rejected"


async def _store_contact(session: Tx, values: dict[str, str]) -> Change:
    return await import_lead(session, contact_fields(values))


async def _deal_store(db: Database) -> StoreRow:
    """Stores deal rows; staff members are read once, before the first row."""
    async with db.reading() as session:
        staff = {m.name.lower(): m.name for m in await staff_members.list_all(session)}

    async def store(session: Tx, values: dict[str, str]) -> Change:
        return await import_deal(session, deal_fields(values, staff))

    return store


async def _contact_store(db: Database) -> StoreRow:
    return _store_contact


def _import(
    path: Path,
    what: str,
    check: Callable[[list[str]], None],
    make_store: Callable[[Database], Awaitable[StoreRow]],
) -> None:
    settings = _settings("WARNING")

    async def main() -> None:
        table = read_table(path, check)

        async def work(db: Database) -> None:
            tally = await import_rows(db, table, await make_store(db))
            _say(tally.summary(what))

        await _with_db(settings, work)

    _run(main)


FileArgument = Annotated[Path, typer.Argument(help="A CSV file with a header line")]


@import_cli.command("contacts")
def import_contacts(path: FileArgument) -> None:
    """Create or update contacts: matched by external_id, then email, then telegram_id.

    Columns: name, email, phone, telegram_id, company, tags (separated by ;), owner, source,
    external_id, timezone; any other column is kept as a custom field.
    """
    _import(path, "contacts", check_contact_columns, _contact_store)


@import_cli.command("deals")
def import_deals(path: FileArgument) -> None:
    """Create or update deals: matched by contact and title (import the contacts first).

    Columns: title, contact_email, owner (a staff member), stage, value, last_activity_at.
    """
    _import(path, "deals", check_deal_columns, _deal_store)
