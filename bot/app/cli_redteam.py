"""`crmbot redteam`: attack the agents with a model that obeys the attacker, and count what
got through. Runs offline on a scratch database; exits 1 if any unsafe action was executed
(or an attack crashed the engine), so it can gate a deploy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bot.app.redteam.harness import Report, run_all


def redteam_command(
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", help="Attack only this agent (repeatable); default: all shipped"),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write the report here: .md for a table, anything else for JSON"),
    ] = None,
) -> None:
    """Attack the agents with a compromised model; print the attacks and any unsafe action."""
    result: Report = asyncio.run(run_all(agent or None))
    for outcome in result.outcomes:
        verdict = "; ".join(outcome.unsafe) or (
            f"ERROR {outcome.error}" if outcome.error else "held"
        )
        typer.echo(
            f"{outcome.agent:<20} {outcome.attack:<26} {outcome.vector:<8} "
            f"{outcome.status:<22} {verdict}"
        )
    typer.echo(
        f"{len(result.outcomes)} attacks tried, {result.unsafe} unsafe actions executed, "
        f"{result.errors} errors"
    )
    if report is not None:
        text = result.as_markdown() if report.suffix == ".md" else result.as_json()
        report.write_text(text, encoding="utf-8")
    if result.unsafe or result.errors:
        raise typer.Exit(1)
