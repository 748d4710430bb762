"""`crmbot staff`: the people a deal's owner names, and their Telegram ids."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app.cli_common import _run, _settings, _with_db
from bot.core.hours import BusinessHours
from bot.core.settings import Settings
from bot.store import meetings, staff_members
from bot.store.availability import set_hours
from bot.store.db import Database
from bot.store.models import StaffMember

staff_cli = typer.Typer(
    help="Staff members: deal owners and where they get messages.", no_args_is_help=True
)


def describe(member: StaffMember) -> str:
    """One line: the name, where their own messages go, and their invites' address."""
    where = f"telegram {member.telegram_id}" if member.telegram_id else "no Telegram id"
    if member.email:
        where += f", {member.email}"
    return f"{member.name} ({where})"


def feed_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url}/calendar/{token}.ics"


@staff_cli.command("add")
def staff_add(
    name: Annotated[str, typer.Argument(help="Their name, as deals name their owner")],
    telegram_id: Annotated[
        int | None, typer.Option(help="Their Telegram user id, for their own messages")
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Their address: the organizer of their meetings' invites")
    ] = None,
) -> None:
    """Add a staff member, or set the Telegram id or email of one already added."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                member, change = await staff_members.add(session, name, telegram_id)
                if email is not None and email != member.email:
                    member = await meetings.set_email(session, member.name, email)
                    change = "updated" if change == "unchanged" else change
            typer.echo(f"{change} {describe(member)}")

        await _with_db(settings, work)

    _run(main)


@staff_cli.command("hours")
def staff_hours(
    name: Annotated[str, typer.Argument(help="The staff member")],
    hours: Annotated[
        str | None,
        typer.Argument(help="Like BUSINESS_HOURS: 'mon-fri 09:00-17:00'; omit to clear"),
    ] = None,
) -> None:
    """Set a staff member's own working hours (meeting times are offered within them)."""
    settings = _settings("WARNING")

    async def main() -> None:
        if hours is not None:
            BusinessHours(hours, settings.business_timezone)  # a bad spec is one error line

        async def work(db: Database) -> None:
            async with db.transaction() as session:
                await set_hours(session, name, hours)
            typer.echo(f"{name}: {hours or 'BUSINESS_HOURS'}")

        await _with_db(settings, work)

    _run(main)


@staff_cli.command("list")
def staff_list() -> None:
    """List staff members by name."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                members = await staff_members.list_all(session)
            if not members:
                typer.echo("no staff members; add one: crmbot staff add NAME --telegram-id ID")
            for member in members:
                typer.echo(describe(member))

        await _with_db(settings, work)

    _run(main)


@staff_cli.command("remove")
def staff_remove(name: str) -> None:
    """Remove a staff member (their deals keep them as owner by name)."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                member = await staff_members.remove(session, name)
            typer.echo(f"removed {member.name}")

        await _with_db(settings, work)

    _run(main)


@staff_cli.command("calendar")
def staff_calendar(
    name: Annotated[str, typer.Argument(help="The staff member")],
    rotate: Annotated[
        bool, typer.Option(help="Issue a new URL; the old one stops working at once")
    ] = False,
) -> None:
    """Print the staff member's private calendar feed URL, to subscribe to in Google,
    Outlook or Apple Calendar: their meetings and the team's."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.transaction() as session:
                token = await meetings.calendar_token(session, name, rotate=rotate)
            typer.echo(feed_url(settings, token))
            if settings.events_port is None:
                typer.echo(
                    "note: EVENTS_PORT is not set, so `crmbot run` serves no feed yet", err=True
                )

        await _with_db(settings, work)

    _run(main)
