"""The `crmbot` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from agents import catalog
from agents.definition import TEMPLATES_DIR
from bot.app.audit_view import render_run
from bot.app.cli_common import _run, _settings, _with_db
from bot.app.cli_deadletters import deadletters_cli
from bot.app.cli_drafts import drafts_cli
from bot.app.cli_events import event_command
from bot.app.cli_import import import_cli
from bot.app.cli_jobs import jobs_cli
from bot.app.cli_kb import kb_cli
from bot.app.cli_meetings import meetings_cli
from bot.app.cli_redteam import redteam_command
from bot.app.cli_research import research_command
from bot.app.cli_staff import staff_cli
from bot.app.wiring import App, serve
from bot.core.errors import CrmbotError
from bot.core.settings import Settings
from bot.store.audit import verify_trail
from bot.store.db import Database
from bot.store.migrate import schema_revision

T = TypeVar("T")
cli = typer.Typer(help="crmbot: AI agents that work your CRM conversations.", no_args_is_help=True)
agent_cli = typer.Typer(help="Manage agent definitions.", no_args_is_help=True)
audit_cli = typer.Typer(help="Read and check the audit trail.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
cli.add_typer(agent_cli, name="agent")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(db_cli, name="db")
cli.add_typer(deadletters_cli, name="deadletters")
cli.add_typer(staff_cli, name="staff")
cli.add_typer(import_cli, name="import")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(kb_cli, name="kb")
cli.add_typer(meetings_cli, name="meetings")
cli.add_typer(drafts_cli, name="drafts")


@cli.command()
def run() -> None:
    """Start crmbot with every configured channel (the console when none is)."""
    settings = _settings()
    if not (settings.telegram_bot_token or settings.email_enabled):
        settings = _settings(console=True)  # a conversation on the terminal: keep it readable

    async def main() -> None:
        from channels.console import ConsoleChannel
        from channels.staff_log import StaffLogChannel

        if settings.telegram_bot_token or settings.email_enabled:
            await _run_channels(settings)
            return
        app = App(settings, quiet_seconds=0)
        try:
            await app.start()
            typer.echo(
                "No channel is configured: starting the console channel on "
                f"{settings.database_url} with the {settings.llm_provider} provider.",
                err=True,
            )
            console = ConsoleChannel(app, "console-user")
            app.add_channel(console)
            app.add_channel(StaffLogChannel())
            await serve(app, [console.run])
        finally:
            await app.aclose()

    _run(main)


async def _run_channels(settings: Settings) -> None:
    """Telegram and/or email in one process, sharing the engine, store and outbox."""
    from bot.desk.staff import STAFF_CHANNEL
    from channels.email.service import EmailService
    from channels.staff_log import StaffLogChannel
    from channels.telegram.service import TelegramService

    app = App(settings)
    services: list[TelegramService | EmailService] = []
    if settings.telegram_bot_token:
        services.append(TelegramService(app, settings))
    if settings.email_enabled:
        services.append(EmailService(app, settings))
    if STAFF_CHANNEL not in app.outbox_workers:
        app.add_channel(StaffLogChannel())  # email without a Telegram staff group
    try:
        await app.start()
        for service in services:
            await service.start()
        await serve(app, [service.run for service in services])
    finally:
        await app.aclose()  # finishes runs and flushes the outbox while channels can still send
        for service in services:
            await service.stop()


@cli.command()
def chat(
    contact: Annotated[str, typer.Option(help="Who you are talking as")] = "console-user",
    agent: Annotated[str | None, typer.Option(help="Agent to talk to (default: routing)")] = None,
) -> None:
    """Talk to an agent in the terminal, or pipe lines in: printf 'hi\\n' | crmbot chat."""
    settings = _settings(console=True)

    async def main() -> None:
        from channels.console import ConsoleChannel
        from channels.staff_log import StaffLogChannel

        app = App(settings, quiet_seconds=0)
        try:
            await app.start()
            if agent:
                async with app.db.transaction() as session:
                    await catalog.get(session, agent)
            console = ConsoleChannel(app, contact, agent=agent)
            app.add_channel(console)
            app.add_channel(StaffLogChannel())
            await console.run()
        finally:
            await app.aclose()

    _run(main)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            current, head = await schema_revision(db.engine)
            typer.echo(f"database at revision {current} (head {head})")

        await _with_db(settings, work)

    _run(main)


@agent_cli.command("import")
def agent_import(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or directories")],
    keep_existing: Annotated[
        bool, typer.Option(help="Leave agents that already exist as they are")
    ] = False,
) -> None:
    """Validate and store agent definitions (all or nothing)."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                results = await catalog.import_paths(session, paths, keep_existing=keep_existing)
            for name, status in results:
                typer.echo(f"{status} {name}")

        await _with_db(settings, work)

    _run(main)


@agent_cli.command("list")
def agent_list() -> None:
    """List agents: name, state, provider, triggers, description."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                agents = await catalog.list_all(session)
            if not agents:
                typer.echo(
                    f"no agents; import the shipped ones: crmbot agent import {TEMPLATES_DIR}"
                )
            for a in agents:
                d = a.definition
                state = "enabled " if a.enabled else "disabled"
                triggers = ",".join(t.type for t in d.triggers)
                provider = d.provider or settings.llm_provider
                typer.echo(
                    f"{d.name:<22} {state} v{a.version:<3} {provider:<9} {triggers:<15} "
                    f"{d.description}"
                )

        await _with_db(settings, work)

    _run(main)


@agent_cli.command("show")
def agent_show(name: str) -> None:
    """Print an agent's definition as YAML."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                stored = await catalog.get(session, name)
            typer.echo(f"# {'enabled' if stored.enabled else 'disabled'}, version {stored.version}")
            typer.echo(stored.definition.to_yaml(), nl=False)

        await _with_db(settings, work)

    _run(main)


def _toggle(name: str, enabled: bool) -> None:
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                await catalog.set_enabled(session, name, enabled)
            typer.echo(f"{name} {'enabled' if enabled else 'disabled'}")

        await _with_db(settings, work)

    _run(main)


@agent_cli.command("enable")
def agent_enable(name: str) -> None:
    """Let the router choose this agent again."""
    _toggle(name, True)


@agent_cli.command("disable")
def agent_disable(name: str) -> None:
    """Stop routing conversations to this agent."""
    _toggle(name, False)


@audit_cli.command("show")
def audit_show(run_id: str) -> None:
    """Print what a run saw, decided and did."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                typer.echo(await render_run(session, run_id))

        await _with_db(settings, work)

    _run(main)


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exit 1 and list every edited or deleted row."""
    settings = _settings("WARNING")

    async def main() -> int:
        async def work(db: Database) -> int:
            async with db.transaction() as session:
                found = await verify_trail(session)
            for problem in found.problems:
                typer.echo(f"TAMPERED {problem}")
            typer.echo(
                f"checked {found.rows} audit rows: "
                + ("chain intact" if not found.problems else f"{len(found.problems)} problem(s)")
                + (f"; {found.unsealed} row(s) not sealed yet" if found.unsealed else "")
            )
            return 1 if found.problems else 0

        return await _with_db(settings, work)

    raise typer.Exit(_run(main))


cli.command("event")(event_command)
cli.command("research")(research_command)
cli.command("redteam")(redteam_command)


def main() -> None:
    try:
        cli()
    except CrmbotError as error:  # settings errors raised while parsing
        typer.echo(f"crmbot: error: {error}", err=True)
        sys.exit(2)
