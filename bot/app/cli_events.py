"""`crmbot event`: record an event on a contact from the shell, as `POST /events` would."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app.cli_common import _run, _settings, _with_db
from bot.app.http_bodies import BadRequest, contact_ref, read_json
from bot.core.redact import Redactor
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.leads import ContactRef
from scheduler.events import EventIntake, EventReceipt

CONTACT_HELP = "A contact id, an email, tg:<Telegram user id> or ext:<external id>"


def parse_contact(text: str) -> ContactRef:
    """CONTACT as the command takes it; `BadRequest` when it names no kind of contact."""
    text = text.strip()
    if text.startswith("tg:"):
        return contact_ref({"telegram_id": text.removeprefix("tg:")})
    if text.startswith("ext:"):
        return contact_ref({"external_id": text.removeprefix("ext:")})
    if text.isdecimal():
        return contact_ref({"id": text})
    if "@" in text:
        return contact_ref({"email": text})
    raise BadRequest(
        f"CONTACT {text!r} is none of: a contact id, an email, tg:<Telegram user id>, "
        "ext:<external id>"
    )


def describe(receipt: EventReceipt) -> str:
    """One line saying what became of the event."""
    if receipt.duplicate:
        return (
            f"event {receipt.event_id} was recorded before with this --id; "
            "nothing stored or woken again"
        )
    woke = ", ".join(receipt.woke) if receipt.woke else "no agent"
    return f"event {receipt.event_id} recorded for contact {receipt.contact_id}; woke {woke}"


def event_command(
    contact: Annotated[str, typer.Argument(metavar="CONTACT", help=CONTACT_HELP)],
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="The event, like trial.started")],
    data: Annotated[
        str | None, typer.Option(help="The event's data, a JSON object (default: {})")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--id", help="Idempotency key: an event whose key was seen is not stored"),
    ] = None,
) -> None:
    """Record an event on a contact and wake the agents it triggers."""
    settings = _settings("WARNING")

    async def main() -> None:
        ref = parse_contact(contact)
        parsed = None if data is None else read_json(data, "--data")
        intake_audit = AuditLog(Redactor(settings.secrets()))

        async def work(db: Database) -> EventReceipt:
            return await EventIntake(db, intake_audit).record(
                ref, type_, parsed, key=key, source="cli"
            )

        typer.echo(describe(await _with_db(settings, work)))

    _run(main)
