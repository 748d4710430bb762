"""`crmbot meetings`: the booked meetings, and moving or cancelling one as a person.

A move or a cancellation goes to the contact the way the booking did (an updated invite with
the same UID and the next SEQUENCE, or METHOD:CANCEL), through the outbox of the running bot,
and is posted in the staff group and audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from bot.app.cli_common import _run, _settings, _with_db
from bot.core.errors import ConfigurationError
from bot.core.redact import Redactor
from bot.desk.meeting_notices import ends_at, label
from bot.desk.meetings import ChangeResult, cancel, reschedule
from bot.store.audit import AuditLog
from bot.store.contacts import get_contact
from bot.store.db import Database
from bot.store.meetings import list_meetings
from bot.store.models import Contact, Meeting
from bot.store.types import utcnow

meetings_cli = typer.Typer(help="Booked meetings: list, reschedule, cancel.", no_args_is_help=True)
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who decided, for the audit trail (a staff member)")
]


def describe(meeting: Meeting, contact: Contact, zone: ZoneInfo) -> str:
    """One line: id, time in the team's zone, owner, contact, status and SEQUENCE."""
    when = f"{label(meeting.starts_at, zone)}-{ends_at(meeting).astimezone(zone):%H:%M}"
    who = contact.name or contact.email or f"contact {contact.id}"
    return (
        f"#{meeting.id:<5} {when:<26} {meeting.owner or '-':<16} {who:<24} "
        f"{meeting.status:<9} seq {meeting.sequence}  {meeting.topic}"
    )


def parse_when(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 time; without an offset it is in BUSINESS_TIMEZONE."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"WHEN {text!r} is not a time like 2030-05-06T09:30 or 2030-05-06T09:30+02:00"
        ) from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


@meetings_cli.command("list")
def meetings_list(
    all_: Annotated[
        bool, typer.Option("--all", help="Also cancelled ones and the past 30 days")
    ] = False,
) -> None:
    """List upcoming booked meetings, soonest first (times in BUSINESS_TIMEZONE)."""
    settings = _settings("WARNING")
    zone = ZoneInfo(settings.business_timezone)

    async def main() -> None:
        async def work(db: Database) -> None:
            since = utcnow() - (timedelta(days=30) if all_ else timedelta(0))
            async with db.reading() as session:
                found = await list_meetings(session, since=since, include_cancelled=all_)
                lines = [describe(m, await get_contact(session, m.contact_id), zone) for m in found]
            typer.echo("\n".join(lines) if lines else "no meetings")

        await _with_db(settings, work)

    _run(main)


def _report(result: ChangeResult, done: str) -> int:
    if not result.done:
        typer.echo(f"meeting #{result.meeting.id} not changed: {result.detail}", err=True)
        return 1
    typer.echo(f"meeting #{result.meeting.id} {done}; {result.detail}")
    return 0


@meetings_cli.command("reschedule")
def meetings_reschedule(
    meeting_id: Annotated[int, typer.Argument(metavar="ID")],
    when: Annotated[str, typer.Argument(metavar="WHEN", help="e.g. 2030-05-06T09:30")],
    minutes: Annotated[
        int | None, typer.Option(min=15, max=480, help="A new length (default: as it was)")
    ] = None,
    by: ByOption = None,
) -> None:
    """Move a meeting; the contact gets the updated invite (same UID, SEQUENCE + 1)."""
    settings = _settings("WARNING")
    zone = ZoneInfo(settings.business_timezone)
    audit = AuditLog(Redactor(settings.secrets()))

    async def main() -> int:
        starts_at = parse_when(when, zone)

        async def work(db: Database) -> int:
            async with db.transaction() as session:
                result = await reschedule(
                    session,
                    audit,
                    meeting_id,
                    starts_at,
                    minutes=minutes,
                    by=f"cli:{by}" if by else "cli",
                    team_zone=zone,
                )
            return _report(result, f"moved to {label(starts_at, zone)}")

        return await _with_db(settings, work)

    raise typer.Exit(_run(main))


@meetings_cli.command("cancel")
def meetings_cancel(
    meeting_id: Annotated[int, typer.Argument(metavar="ID")], by: ByOption = None
) -> None:
    """Cancel a meeting and free its time; the contact gets the cancellation (METHOD:CANCEL)."""
    settings = _settings("WARNING")
    zone = ZoneInfo(settings.business_timezone)
    audit = AuditLog(Redactor(settings.secrets()))

    async def main() -> int:
        async def work(db: Database) -> int:
            async with db.transaction() as session:
                result = await cancel(
                    session, audit, meeting_id, by=f"cli:{by}" if by else "cli", team_zone=zone
                )
            return _report(result, "cancelled")

        return await _with_db(settings, work)

    raise typer.Exit(_run(main))
