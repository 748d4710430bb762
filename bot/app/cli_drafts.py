"""`crmbot drafts`: what agents wrote that waits for a person, and deciding on it.

Approving and rejecting go through `bot.desk.drafts`, as the Approve and Reject buttons in the
staff group do: the same compare-and-set (a draft is decided once), the same sending, the same
audit record, naming the staff member given with `--as`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app.cli_common import _run, _settings, _with_db
from bot.core.errors import ConfigurationError
from bot.core.redact import Redactor
from bot.desk.drafts import WHY, DraftNotSent, decide_draft
from bot.desk.staff import StaffMember
from bot.store import drafts, staff_members
from bot.store.audit import AuditLog
from bot.store.contacts import get_contact
from bot.store.db import Database, Tx
from bot.store.models import Contact, Draft

drafts_cli = typer.Typer(
    help="Drafts: agent answers and outbound openers waiting for a person.", no_args_is_help=True
)
EXCERPT = 70


def _who(contact: Contact) -> str:
    return f"{contact.name} <{contact.email}>" if contact.email else contact.name


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT else line[: EXCERPT - 1] + "…"


def _line(draft: Draft, contact: Contact) -> str:
    what = draft.subject or draft.text
    return (
        f"#{draft.id:<5} {draft.status:<8} {draft.kind:<8} {draft.agent:<20} "
        f"{_who(contact)}  {_excerpt(what)}"
    )


def render(draft: Draft, contact: Contact) -> str:
    """The whole draft, as `drafts show` prints it."""
    lines = [
        f"draft #{draft.id}  {draft.kind}  {draft.status}  by {draft.agent}"
        + (f"  (run {draft.run_id})" if draft.run_id else ""),
        f"to: {_who(contact)} on {draft.channel}",
        f"created: {draft.created_at:%Y-%m-%d %H:%M} UTC",
        f"why a draft: {WHY.get(draft.reason, draft.reason)}"
        + (f" (confidence {draft.confidence:.2f})" if draft.confidence is not None else ""),
    ]
    if draft.question:
        label = "built from" if draft.kind == "outreach" else "question"
        lines.append(f"{label}: {draft.question}")
    if draft.subject:
        lines.append(f"subject: {draft.subject}")
    lines += ["", draft.text, ""]
    for cited in draft.citations:
        lines.append(f"cites: {cited.get('title', '')} {cited.get('url') or ''}".rstrip())
    lines += [f"source: {url}" for url in draft.sources]
    if draft.decided_by:
        when = f" at {draft.decided_at:%Y-%m-%d %H:%M} UTC" if draft.decided_at else ""
        lines.append(f"decided: {draft.status} by {draft.decided_by}{when}")
    if draft.final_text is not None and draft.final_text != draft.text:
        lines += ["sent as:", draft.final_text]
    if draft.status == "pending":
        lines.append(f"decide: crmbot drafts approve {draft.id} --as NAME (or reject)")
    return "\n".join(lines)


async def _draft(session: Tx, draft_id: int) -> Draft:
    draft = await drafts.get_draft(session, draft_id)
    if draft is None:
        raise ConfigurationError(f"no draft #{draft_id} (crmbot drafts list)")
    return draft


@drafts_cli.command("list")
def drafts_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only drafts in this state: {', '.join(drafts.STATUSES)}")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help=f"Only drafts of this kind: {', '.join(drafts.KINDS)}")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first")] = 50,
) -> None:
    """List drafts, newest first: id, state, kind, agent, contact, subject or text."""
    settings = _settings("WARNING")
    for value, allowed, name in ((status, drafts.STATUSES, "status"), (kind, drafts.KINDS, "kind")):
        if value is not None and value not in allowed:
            typer.echo(f"crmbot: error: --{name} is one of {', '.join(allowed)}", err=True)
            raise typer.Exit(2)

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.reading() as session:
                found = await drafts.list_drafts(session, status=status, kind=kind, limit=limit)
                for draft in found:
                    typer.echo(_line(draft, await get_contact(session, draft.contact_id)))
            if not found:
                typer.echo("no drafts" + (f" {status}" if status else ""))

        await _with_db(settings, work)

    _run(main)


@drafts_cli.command("show")
def drafts_show(draft_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Print a draft whole: who it is for, why it is a draft, its text and sources."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.reading() as session:
                draft = await _draft(session, draft_id)
                typer.echo(render(draft, await get_contact(session, draft.contact_id)))

        await _with_db(settings, work)

    _run(main)


def _decide(draft_id: int, staff_name: str, approve: bool) -> None:
    settings = _settings("WARNING")
    audit = AuditLog(Redactor(settings.secrets()))

    async def main() -> int:
        async def work(db: Database) -> int:
            try:
                async with db.transaction() as session:
                    member = await staff_members.get(session, staff_name)
                    await _draft(session, draft_id)
                    staff = StaffMember(f"cli:{member.name}", member.name)
                    outcome = await decide_draft(
                        session, audit, draft_id=draft_id, approve=approve, staff=staff
                    )
            except DraftNotSent as not_sent:
                typer.echo(f"draft #{draft_id} not sent, still pending: {not_sent}")
                return 1
            if outcome in ("approved", "rejected"):
                done = "queued to be sent" if approve else "nothing is sent"
                typer.echo(f"draft #{draft_id} {outcome} by {member.name}: {done}")
                return 0
            typer.echo(f"draft #{draft_id}: {outcome}")
            return 1

        return await _with_db(settings, work)

    raise typer.Exit(_run(main))


AsOption = Annotated[
    str, typer.Option("--as", help="The staff member deciding (crmbot staff list)")
]


@drafts_cli.command("approve")
def drafts_approve(draft_id: Annotated[int, typer.Argument(metavar="ID")], as_: AsOption) -> None:
    """Send a pending draft as written (an opener by email, from its deal owner's name)."""
    _decide(draft_id, as_, approve=True)


@drafts_cli.command("reject")
def drafts_reject(draft_id: Annotated[int, typer.Argument(metavar="ID")], as_: AsOption) -> None:
    """Reject a pending draft: nothing is sent."""
    _decide(draft_id, as_, approve=False)
