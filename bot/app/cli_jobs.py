"""`crmbot jobs`: the scheduled jobs, by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from bot.app.cli_common import _run, _settings
from bot.app.jobs_desk import JobsDesk
from bot.app.wiring import App

jobs_cli = typer.Typer(
    help="Scheduled jobs: list, run, pause, resume, preview.", no_args_is_help=True
)
CLI_ACTOR = "cli"


def _with_desk(work: Callable[[JobsDesk], Awaitable[str]]) -> None:
    settings = _settings("WARNING")

    async def main() -> None:
        app = App(settings)
        heartbeat: asyncio.Task[None] | None = None
        try:
            await app.start()
            # `jobs run` runs wake-ups, holding their leases: without heartbeats a long run
            # would see them lapse and another worker take its conversations over.
            heartbeat = asyncio.create_task(app.heartbeat.run_forever())
            desk = JobsDesk(app.db, app.audit, app.scheduler)
            typer.echo(await work(desk))
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
            await app.aclose()

    _run(main)


@jobs_cli.command("list")
def jobs_list() -> None:
    """Each job, its next fire time and its last result."""
    _with_desk(lambda desk: desk.list_text())


@jobs_cli.command("run")
def jobs_run(name: str) -> None:
    """Fire a job now, by hand (its messages go out through the running bot's outbox)."""
    _with_desk(lambda desk: desk.run(name, CLI_ACTOR))


@jobs_cli.command("pause")
def jobs_pause(name: str) -> None:
    """Stop a job from firing until it is resumed."""
    _with_desk(lambda desk: desk.pause(name, CLI_ACTOR))


@jobs_cli.command("resume")
def jobs_resume(
    name: Annotated[str | None, typer.Argument(help="The job; omit with --all")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every job, and automatic sending after the breaker")
    ] = False,
) -> None:
    """Let a paused job fire again; --all resumes every job and the proactive breaker."""
    if (name is None) == (not all_):
        raise typer.BadParameter("give a job name, or --all (not both)")
    _with_desk(lambda desk: desk.resume(name, CLI_ACTOR))


@jobs_cli.command("preview")
def jobs_preview(
    hours: Annotated[float, typer.Option(help="How far ahead to look")] = 24.0,
) -> None:
    """What would fire and for how many contacts; sends nothing."""
    _with_desk(lambda desk: desk.preview_text(hours))
