"""Admin commands (`/agent ...`, `/audit RUN_ID`, `/staff ...`), independent of the channel
that carries them.

A channel checks that the sender is an admin (and records a refusal when not), passes the
command's name and words here (`AdminCommands.names()` says which names are commands), and
shows the reply. Every command is audited with who gave it; a malformed one gets its usage line.
A simple command (one transaction, a text reply) is added with one `register` line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from agents import catalog
from agents.definition import AgentDefinition, parse_definition
from agents.runner import AgentRunner
from bot.app.audit_view import render_run
from bot.core.errors import ConfigurationError
from bot.store import catalog as stored_agents
from bot.store import staff_members
from bot.store.agent_runs import latest_runs_of
from bot.store.audit import AuditLog
from bot.store.contacts import Identity, find_contact, resolve_contact
from bot.store.conversations import open_conversation
from bot.store.db import Database, Tx
from bot.store.models import StaffMember
from channels.host import Admin

USAGE = {
    "list": "/agent list",
    "show": "/agent show NAME",
    "create": "/agent create NAME",
    "set": "/agent set NAME FIELD VALUE  (fields: "
    + ", ".join(
        [
            "goal",
            "persona",
            "rules",
            "triggers",
            "tools",
            "provider",
            "model",
            "max_steps",
            "budget",
        ]
    )
    + ")",
    "enable": "/agent enable NAME",
    "disable": "/agent disable NAME",
    "assign": "/agent assign NAME CONTACT|tag:TAG",
    "test": "/agent test NAME TEXT",
    "runs": "/agent runs NAME",
}
AGENT_USAGE = "Usage:\n" + "\n".join(USAGE.values())
AUDIT_USAGE = "Usage: /audit RUN_ID"
STAFF_USAGE = "Usage:\n/staff list\n/staff add NAME TELEGRAM_ID\n/staff remove NAME"
_NAME = re.compile(r"[a-z0-9_]{1,32}")
"""What Telegram accepts as a command name."""
NEW_AGENT_GOAL = "Help the contact with their question and hand off to a person when unsure."


class UsageError(ConfigurationError):
    """The command is malformed; the message is its usage line."""


_Command = Callable[[Tx, Admin, list[str], str], Awaitable[str]]
"""A one-transaction `/agent` subcommand: (session, admin, its words, the whole text)."""
SimpleCommand = Callable[[Tx, Admin, str], Awaitable[str]]
"""A one-transaction admin command: (session, admin, the text after the command) -> reply."""
AloneCommand = Callable[[Admin, str], Awaitable[str]]
"""An admin command with transactions of its own (it runs jobs or agents): (admin, text)."""


def _refusal(error: ConfigurationError) -> str:
    """The reply to a command that could not be done: its usage line, or why not."""
    return str(error) if isinstance(error, UsageError) else f"Not done: {error}"


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _list_value(value: str) -> list[str]:
    separator = "|" if "|" in value else ","
    return [part.strip() for part in value.split(separator) if part.strip()]


def _budget(current: AgentDefinition, value: str) -> dict[str, Any]:
    names = {
        "tokens": "max_tokens_per_run",
        "cost": "max_cost_per_run",
        "monthly": "monthly_ceiling",
    }
    budget = current.budget.model_dump(mode="json")
    for pair in value.split():
        key, _, number = pair.partition("=")
        if key not in names or not number:
            raise UsageError("budget takes tokens=N cost=USD monthly=USD, e.g. budget tokens=20000")
        try:
            budget[names[key]] = int(number) if key == "tokens" else str(Decimal(number))
        except (ValueError, InvalidOperation):
            raise UsageError(f"budget {key} must be a number, not {number!r}") from None
    return budget


def field_value(current: AgentDefinition, field: str, value: str) -> tuple[str, Any]:
    """Turn `/agent set` text into the definition field and its typed value."""
    match field:
        case "goal" | "persona":
            return field, value
        case "rules":
            return "rules", _list_value(value)
        case "triggers":
            return "handoff_triggers", _list_value(value)
        case "tools":
            return "tools", _list_value(value)
        case "provider" | "model":
            return field, None if value.lower() in ("default", "none", "") else value
        case "max_steps":
            if not value.isdigit():
                raise UsageError("max_steps must be a whole number")
            return "max_steps", int(value)
        case "budget":
            return "budget", _budget(current, value)
    raise UsageError(f"Usage: {USAGE['set']}")


class AdminCommands:
    """Executes admin commands against the store and the engine.

    Every command but `/agent test` runs in one transaction; `agent_in` and `audit_run_in`
    run it in the caller's, so a channel can apply a command, its audit and its reply (and
    its own exactly-once marker) together. `/agent test` runs an agent, which takes
    transactions of its own; `runs_an_agent` tells a channel which case it has.
    """

    def __init__(self, db: Database, audit: AuditLog, runner: AgentRunner) -> None:
        self.db, self.audit, self.runner = db, audit, runner
        # `/agent` and `/audit` audit themselves (agent_in, audit_run_in are public); the
        # registered ones are audited by the wrapper `register` puts around them.
        self._handlers: dict[str, SimpleCommand] = {
            "agent": self.agent_in,
            "audit": self.audit_run_in,
        }
        self._descriptions = {
            "agent": "Manage agents: list, show, create, set, enable, disable, assign, test, runs",
            "audit": "Show what an agent run saw, decided and did: /audit RUN_ID",
        }
        self._alone: dict[str, AloneCommand] = {}
        self.register(
            "staff", self._staff, "Staff members: list, add NAME TELEGRAM_ID, remove NAME"
        )
        self._commands: dict[str, _Command] = {
            "list": self._list,
            "show": self._show,
            "create": self._create,
            "set": self._set,
            "enable": self._enable,
            "disable": self._disable,
            "assign": self._assign,
            "runs": self._runs,
        }

    def register_alone(self, name: str, handler: AloneCommand, description: str = "") -> None:
        """Like `register`, for a command that takes transactions of its own (it runs agents
        or jobs): it never shares the caller's, so a channel runs it at most once, like
        `/agent test`. Its reply is audited in a transaction of its own."""
        if not _NAME.fullmatch(name) or name in self._handlers or name in self._alone:
            raise ValueError(f"admin command name {name!r} is taken or not a command name")
        self._alone[name] = handler
        self._descriptions[name] = description or f"/{name}"

    def stands_alone(self, name: str, text: str) -> bool:
        """Whether `/name text` runs outside the caller's transaction (`command_alone`)."""
        return name in self._alone or (name == "agent" and self.runs_an_agent(text))

    async def command_alone(self, admin: Admin, name: str, text: str) -> str:
        """Run a command `stands_alone` is true for; returns the reply."""
        if name == "agent":
            return await self.agent_test(admin, text)
        try:
            reply = await self._alone[name](admin, text)
        except ConfigurationError as error:
            reply = _refusal(error)
        async with self.db.transaction() as session:
            await self._audit_command(session, admin, f"/{name} {text}".rstrip(), reply)
        return reply

    def register(self, name: str, handler: SimpleCommand, description: str = "") -> None:
        """Make `/name` an admin command: `handler` runs in a savepoint of the caller's
        transaction, a ConfigurationError from it becomes the reply (changing nothing), and
        the command and its reply are audited. `description` is its line in a command menu."""
        if not _NAME.fullmatch(name) or name in self._handlers or name in self._alone:
            raise ValueError(f"admin command name {name!r} is taken or not a command name")
        self._handlers[name] = self._audited(name, handler)
        self._descriptions[name] = description or f"/{name}"

    def names(self) -> tuple[str, ...]:
        """Every admin command's name, without the slash."""
        return (*self._handlers, *self._alone)

    def description(self, name: str) -> str:
        """The command's line in a command menu."""
        return self._descriptions[name]

    async def command(self, admin: Admin, name: str, text: str) -> str:
        """Run `/name text` on its own (`/agent test` too); returns the reply."""
        if self.stands_alone(name, text):
            return await self.command_alone(admin, name, text)
        async with self.db.transaction() as session:
            return await self.command_in(session, admin, name, text)

    async def command_in(self, session: Tx, admin: Admin, name: str, text: str) -> str:
        """Run `/name text` (any command but `/agent test`) in the caller's transaction,
        audited; returns the reply."""
        handler = self._handlers.get(name)
        if handler is None:
            return f"Unknown command /{name}. Commands: " + ", ".join(
                f"/{known}" for known in self._handlers
            )
        return await handler(session, admin, text)

    def _audited(self, name: str, handler: SimpleCommand) -> SimpleCommand:
        async def run(session: Tx, admin: Admin, text: str) -> str:
            try:
                async with session.begin_nested():
                    reply = await handler(session, admin, text)
            except ConfigurationError as error:
                reply = _refusal(error)
            await self._audit_command(session, admin, f"/{name} {text}".rstrip(), reply)
            return reply

        return run

    @staticmethod
    def runs_an_agent(text: str) -> bool:
        """Whether `/agent {text}` is a dry run (`test`), which cannot share a transaction."""
        words = _words(text)
        return bool(words) and words[0] == "test"

    async def agent(self, admin: Admin, text: str) -> str:
        """Run `/agent ...` (text without the command itself) on its own; returns the reply."""
        if self.runs_an_agent(text):
            return await self.agent_test(admin, text)
        async with self.db.transaction() as session:
            return await self.agent_in(session, admin, text)

    async def agent_in(self, session: Tx, admin: Admin, text: str) -> str:
        """Run an `/agent` command other than `test` in the caller's transaction, audited.

        A command that fails changes nothing (it runs in a savepoint); its reply says why.
        """
        words = _words(text)
        if not words or words[0] not in self._commands:
            return AGENT_USAGE
        command = self._commands[words[0]]
        try:
            async with session.begin_nested():
                reply = await command(session, admin, words[1:], text)
        except ConfigurationError as error:
            reply = _refusal(error)
        await self._audit_command(session, admin, f"/agent {text}", reply)
        return reply

    async def agent_test(self, admin: Admin, text: str) -> str:
        """`/agent test NAME TEXT`: a dry run of the agent, in transactions of its own."""
        try:
            reply = await self._test(admin, _words(text)[1:], text)
        except ConfigurationError as error:
            reply = _refusal(error)
        async with self.db.transaction() as session:
            await self._audit_command(session, admin, f"/agent {text}", reply)
        return reply

    async def audit_run(self, admin: Admin, text: str) -> str:
        """Run `/audit RUN_ID` on its own; returns the rendered run."""
        async with self.db.transaction() as session:
            return await self.audit_run_in(session, admin, text)

    async def audit_run_in(self, session: Tx, admin: Admin, text: str) -> str:
        """Run `/audit RUN_ID` in the caller's transaction, audited."""
        words = _words(text)
        if len(words) != 1:
            return AUDIT_USAGE
        try:
            async with session.begin_nested():
                reply = await render_run(session, words[0])
        except ConfigurationError as error:
            reply = str(error)
        await self.audit.append(
            session, "admin_command", {"command": f"/audit {text}"}, actor=admin.actor
        )
        return reply

    async def _audit_command(self, session: Tx, admin: Admin, command: str, reply: str) -> None:
        payload = {"command": command, "reply": reply[:500]}
        await self.audit.append(session, "admin_command", payload, actor=admin.actor)

    @staticmethod
    def _need(args: list[str], count: int, usage: str) -> list[str]:
        if len(args) < count:
            raise UsageError(f"Usage: {usage}")
        return args

    async def _list(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        agents = await catalog.list_all(session)
        if not agents:
            return "No agents yet. Create one with /agent create NAME."
        return "\n".join(
            f"{'●' if a.enabled else '○'} {a.definition.name} (v{a.version}): "
            f"{a.definition.description or a.definition.goal[:80]}"
            for a in agents
        )

    async def _show(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        (name,) = self._need(args, 1, USAGE["show"])[:1]
        stored = await catalog.get(session, name)
        state = "enabled" if stored.enabled else "disabled"
        return f"{name}: {state}, version {stored.version}\n\n{stored.definition.to_yaml()}"

    async def _create(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        (name,) = self._need(args, 1, USAGE["create"])[:1]
        definition = parse_definition(
            {"name": name, "goal": NEW_AGENT_GOAL, "persona": "A helpful, concise assistant."},
            name,
        )
        if await stored_agents.get_row(session, name) is not None:
            return f"Not done: an agent named {name} already exists."
        await catalog.save(session, definition)
        await catalog.set_enabled(session, name, False)
        return (
            f"Created {name} (disabled). Set its goal and persona with /agent set, "
            f"then /agent enable {name}."
        )

    async def _set(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        self._need(args, 3, USAGE["set"])
        name, field = args[0], args[1]
        value = (
            text.split(field, 1)[1].strip().strip("\"'") if field in text else " ".join(args[2:])
        )
        stored = await catalog.get(session, name)
        target, typed = field_value(stored.definition, field, value)
        changed = await catalog.set_field(session, name, target, typed)
        return f"{name}.{field} updated (version {changed.version})."

    async def _enable(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        return await self._toggle(session, self._need(args, 1, USAGE["enable"])[0], True)

    async def _disable(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        return await self._toggle(session, self._need(args, 1, USAGE["disable"])[0], False)

    @staticmethod
    async def _toggle(session: Tx, name: str, enabled: bool) -> str:
        await catalog.set_enabled(session, name, enabled)
        return f"{name} {'enabled' if enabled else 'disabled'}."

    async def _assign(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        name, target = self._need(args, 2, USAGE["assign"])[:2]
        stored = await catalog.get(session, name)
        if target.startswith("tag:") and len(target) > 4:
            tags = sorted({*stored.definition.assigned_tags, target[4:]})
            await catalog.set_field(session, name, "assigned_tags", tags)
            return f"Contacts tagged {target[4:]} now go to {name}."
        contact = await find_contact(session, target)
        if contact is None:
            return f"Not done: no contact {target!r} (use an id, @username, email or name)."
        contact.assigned_agent = name
        return f"{contact.name} (#{contact.id}) now goes to {name}."

    async def _runs(self, session: Tx, admin: Admin, args: list[str], text: str) -> str:
        (name,) = self._need(args, 1, USAGE["runs"])[:1]
        runs = await latest_runs_of(session, name, limit=10)
        if not runs:
            return f"{name} has no runs yet."
        return "\n".join(
            f"{r.started_at:%m-%d %H:%M} {r.id} ({r.trigger}) {r.status}: "
            f"{(r.stop_reason or '')[:80]} "
            f"({r.steps} steps, ${r.cost:.4f})"
            for r in runs
        )

    async def _test(self, admin: Admin, args: list[str], text: str) -> str:
        self._need(args, 2, USAGE["test"])
        name = args[0]
        message = text.split(name, 1)[1].strip()
        async with self.db.transaction() as session:
            stored = await catalog.get(session, name)
            sandbox = await resolve_contact(
                session, Identity("test", admin.actor, name=f"test contact of {admin.actor}")
            )
            conversation = await open_conversation(session, sandbox.id, "test")
        outcome, run = await self.runner.run_dry(
            stored.definition, conversation.id, sandbox.id, "test", message, admin.actor
        )
        async with self.db.transaction() as session:
            trace = await render_run(session, run.run_id)
        return f"Dry run of {name} (nothing was sent): {outcome.status}\n\n{trace}"

    # /staff

    async def _staff(self, session: Tx, admin: Admin, text: str) -> str:
        match _words(text):
            case ["list"]:
                members = await staff_members.list_all(session)
                if not members:
                    return "No staff members yet. Add one with /staff add NAME TELEGRAM_ID."
                return "\n".join(_staff_line(member) for member in members)
            case ["add", *name, telegram_id] if name and telegram_id.isdigit():
                member, change = await staff_members.add(session, " ".join(name), int(telegram_id))
                return f"{change.capitalize()}: {_staff_line(member)}."
            case ["remove", *name] if name:
                member = await staff_members.remove(session, " ".join(name))
                return f"Removed {member.name}."
        raise UsageError(STAFF_USAGE)


def _staff_line(member: StaffMember) -> str:
    where = f"Telegram {member.telegram_id}" if member.telegram_id else "no Telegram id"
    return f"{member.name} ({where})"
