"""Events on contacts: stored once, and the agents they wake.

An event (`crmbot event`, `POST /events`, a new lead) is stored whether or not it wakes
anyone: later conditions count events (`when: {max_events: {active_day: 1}}`). Each enabled
agent with a matching `{type: event}` trigger whose routing rule accepts the contact gets a
wake-up, due at once or `after` the trigger's delay. Storing the event, its wake-ups and its
audit record is one transaction, and the sender's idempotency key makes a repeat a no-op.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents import catalog
from agents.definition import parse_duration
from bot.core.errors import ConfigurationError, NotFoundError
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx
from bot.store.events import record_event
from bot.store.leads import ContactRef, find_by_ref
from bot.store.models import Contact, ContactEvent
from bot.store.types import utcnow
from bot.store.wakeups import NewWakeup, add_wakeups
from scheduler.targets import agent_takes

log = logging.getLogger("scheduler.events")
EVENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,79}$")
MAX_DATA_BYTES = 16_384
MAX_KEY_LENGTH = 200


class BadEvent(ConfigurationError):
    """The event itself is malformed; the message says why (an HTTP 400)."""


@dataclass(frozen=True, slots=True)
class EventReceipt:
    """What became of an event."""

    event_id: int
    contact_id: int
    duplicate: bool
    """The idempotency key was seen before: nothing was stored or woken this time."""
    woke: list[str] = field(default_factory=list)
    """Agents that got a wake-up."""


def check_event(type_: object, data: object, key: object) -> tuple[str, dict[str, Any], str | None]:
    """Validate an event's parts; `BadEvent` names the first problem."""
    if not isinstance(type_, str) or not EVENT_TYPE.match(type_):
        raise BadEvent("type must be 1-80 characters of a-z, 0-9 and . _ : - (like trial.started)")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadEvent("data must be a JSON object")
    if len(json.dumps(data, default=str)) > MAX_DATA_BYTES:
        raise BadEvent(f"data is larger than {MAX_DATA_BYTES} bytes")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH):
        raise BadEvent(f"id must be a string of 1-{MAX_KEY_LENGTH} characters")
    return type_, data, key


class EventIntake:
    """Stores events and wakes the agents they trigger."""

    def __init__(
        self, db: Database, audit: AuditLog, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db, self.audit, self.clock = db, audit, clock

    async def record(
        self,
        ref: ContactRef,
        type_: str,
        data: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        source: str = "cli",
    ) -> EventReceipt:
        """Store the event for the contact `ref` names (`NotFoundError` if none does)."""
        type_, data, key = check_event(type_, data, key)
        async with self.db.transaction() as session:
            return await self.record_in(session, ref, type_, data, key=key, source=source)

    async def record_in(
        self,
        session: Tx,
        ref: ContactRef,
        type_: str,
        data: dict[str, Any],
        *,
        key: str | None,
        source: str,
    ) -> EventReceipt:
        contact = await find_by_ref(session, ref)
        if contact is None:
            raise NotFoundError(f"no contact with {ref.kind} {ref.value}")
        event, created = await record_event(
            session,
            contact_id=contact.id,
            type=type_,
            data=data,
            key=key,
            source=source,
            occurred_at=self.clock(),
        )
        if not created:
            return EventReceipt(event.id, event.contact_id, duplicate=True)
        woke = await self._wake(session, contact, event)
        await self.audit.append(
            session,
            "event_received",
            {"event_id": event.id, "type": type_, "source": source, "key": key, "woke": woke},
            actor=f"events:{source}",
        )
        log.info("event %s %s for contact %s woke %s", event.id, type_, contact.id, woke or "-")
        return EventReceipt(event.id, contact.id, duplicate=False, woke=woke)

    async def _wake(self, session: Tx, contact: Contact, event: ContactEvent) -> list[str]:
        wakeups, woke = [], []
        for stored in await catalog.list_all(session):
            agent = stored.definition
            triggers = agent.event_triggers(event.type)
            if not stored.enabled or not triggers or not await agent_takes(session, agent, contact):
                continue
            for index, trigger in triggers:
                delay = parse_duration(trigger.after) if trigger.after else None
                wakeups.append(
                    NewWakeup(
                        key=f"event:{event.id}:{agent.name}:{index}",
                        agent_name=agent.name,
                        trigger=trigger.model_dump(mode="json"),
                        contact_id=contact.id,
                        cause={"event_id": event.id, "event": event.type},
                        since=event.occurred_at,
                        due_at=event.occurred_at + delay if delay else event.occurred_at,
                    )
                )
            woke.append(agent.name)
        await add_wakeups(session, wakeups)
        return woke
