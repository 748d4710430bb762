"""`crmbot deadletters`: input a channel could not read, kept whole; look at it, retry it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bot.app.cli_common import _run, _settings, _with_db
from bot.store import deadletters
from bot.store.db import Database
from bot.store.models import DeadLetter

deadletters_cli = typer.Typer(
    help="Updates and emails that could not be read.", no_args_is_help=True
)
PREVIEW = 60


def _line(letter: DeadLetter) -> str:
    error = letter.error.splitlines()[0][:PREVIEW] if letter.error else ""
    return (
        f"{letter.id:>6} {letter.created_at:%Y-%m-%d %H:%M} {letter.source:<9} "
        f"{letter.status:<12} seen {letter.seen:<3} {letter.ref or '-':<24} {error}"
    )


def _payload(letter: DeadLetter) -> str:
    if letter.source == "telegram":
        return json.dumps(json.loads(letter.payload), indent=2, ensure_ascii=True)
    return letter.payload.decode("utf-8", errors="replace")


@deadletters_cli.command("list")
def deadletters_list(
    status: Annotated[
        str | None, typer.Option(help="Only this status: new, queued, retried, failed_again")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
) -> None:
    """List dead letters, newest first."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                letters = await deadletters.listing(session, status=status, limit=limit)
            if not letters:
                typer.echo("no dead letters")
            for letter in letters:
                typer.echo(_line(letter))

        await _with_db(settings, work)

    _run(main)


@deadletters_cli.command("show")
def deadletters_show(letter_id: int) -> None:
    """Print a dead letter: where it came from, the error, and the input exactly as kept."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                letter = await deadletters.get(session, letter_id)
            typer.echo(_line(letter))
            typer.echo(f"kind:  {letter.kind}\nerror: {letter.error}\n")
            typer.echo(_payload(letter))

        await _with_db(settings, work)

    _run(main)


@deadletters_cli.command("retry")
def deadletters_retry(letter_ids: list[int]) -> None:
    """Queue dead letters to be read again by the running bot (after a fix, say)."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                for letter_id in letter_ids:
                    await deadletters.queue_retry(session, letter_id)
            typer.echo(
                f"queued {len(letter_ids)} dead letter(s); the running bot reads them again "
                "within seconds (`crmbot deadletters list` shows how it went)"
            )

        await _with_db(settings, work)

    _run(main)
