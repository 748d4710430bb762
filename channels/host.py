"""What a channel may ask of the process it runs in: the host protocol.

Channels sit above the store, desk and agents and below the app. They record what arrives,
tell the host which conversations have new messages, wake the outbox, write audit records,
and hand admin commands over; everything else (runs, scheduling, delivery) is the host's.
`bot.app.wiring.App` is the host in production; tests can pass a smaller one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from bot.core.backoff import Backoff
from bot.core.settings import Settings
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx
from bot.store.refusals import Refusals
from channels.base import Channel

Activity = Callable[[int], AbstractAsyncContextManager[None]]
"""Shown while a run works on a conversation (Telegram's "typing")."""

TakeTurns = Callable[[Tx, list[int]], Awaitable[None]]
"""`Host.take_turns`: claims, in an intake's transaction, the turns of the conversations it
recorded messages for."""


async def no_turns(session: Tx, conversation_ids: list[int]) -> None:
    """For an intake with no host to claim turns for: its runs take their leases themselves."""
    del session, conversation_ids


@dataclass(frozen=True, slots=True)
class Admin:
    """Who gives an admin command, as the audit trail names them (e.g. telegram:12345)."""

    actor: str


class AdminPort(Protocol):
    """The admin commands a channel passes on (`/agent ...`, `/audit RUN_ID`, `/staff ...`)."""

    def names(self) -> tuple[str, ...]:
        """Every admin command's name, without the slash: the channel routes these here."""
        ...

    def description(self, name: str) -> str:
        """The command's line in the channel's command menu."""
        ...

    def stands_alone(self, name: str, text: str) -> bool:
        """True for a command that takes transactions of its own (`/agent test`, `/jobs`):
        run it with `command_alone`, at most once, never inside the caller's transaction."""
        ...

    async def command_alone(self, admin: Admin, name: str, text: str) -> str: ...

    async def command_in(self, session: Tx, admin: Admin, name: str, text: str) -> str:
        """Run `/name text` (all but `/agent test`) in the caller's transaction, audited."""
        ...


class Host(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def refusals(self) -> Refusals: ...

    @property
    def admins(self) -> AdminPort: ...

    async def take_turns(self, session: Tx, conversation_ids: list[int]) -> None:
        """Called in the transaction that records new inbound messages, for the conversations
        they belong to: the host may claim those conversations' turns in it (the lease its
        runs need), so the runs that `notify` starts take no commit of their own."""
        ...

    def notify(self, conversation_id: int) -> None:
        """The conversation has new inbound messages (already committed)."""
        ...

    def wake_outbox(self) -> None:
        """Something was queued in the outbox (already committed)."""
        ...

    def add_channel(self, channel: Channel, *, retry: Backoff | None = None) -> None:
        """Deliver this channel's outbox items, retrying transient failures with `retry`."""
        ...

    def add_background(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        """Run a long-lived job of the channel's, supervised like the channel itself."""
        ...

    def add_activity(self, activity: Activity) -> None: ...

    async def settle(self) -> None:
        """Wait until runs in progress are done and the outbox has nothing due."""
        ...
