"""A wired app whose scheduler, runs and deliveries all read one controlled clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agents import catalog
from agents.definition import parse_definition
from bot.app.delivery import OutboxWorker
from bot.store.inbox import pending_messages
from bot.store.leads import LeadFields, upsert_lead
from bot.store.models import Base, Contact, Message, OutboxItem
from scheduler.events import EventIntake
from scheduler.service import Scheduler
from tests.support.harness import Harness, RecordingChannel
from tests.support.rows import rows


def _a_coming_monday() -> datetime:
    """9:00 UTC on a Monday at least a week ahead: outside the default quiet hours, and after
    every row the test writes with the real time (the outbox's due times, say)."""
    day = datetime.now(UTC).date() + timedelta(days=7)
    day += timedelta(days=-day.weekday() % 7)
    return datetime.combine(day, time(9), UTC)


START = _a_coming_monday()


def at(days: int = 0, hour: int = 9, minute: int = 0, second: int = 0) -> datetime:
    """`days` after START's Monday, at hour:minute:second UTC."""
    return datetime.combine(START.date() + timedelta(days=days), time(hour, minute, second), UTC)


class FakeClock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


@dataclass
class Proactive:
    """The harness app, plus a scheduler, event intake and email outbox on the fake clock."""

    harness: Harness
    clock: FakeClock
    scheduler: Scheduler
    events: EventIntake
    email: RecordingChannel
    mailer: OutboxWorker

    @property
    def db(self) -> Any:
        return self.harness.db

    async def add_agent(self, spec: dict[str, Any]) -> None:
        async with self.db.transaction() as session:
            await catalog.save(session, parse_definition(spec))

    async def lead(self, name: str, email: str, **fields: Any) -> int:
        async with self.db.transaction() as session:
            contact, _ = await upsert_lead(session, LeadFields(name=name, email=email, **fields))
            return contact.id

    def scheduler_for(self, worker_id: str) -> Scheduler:
        """Another worker's scheduler on the same database (and clock)."""
        settings = self.harness.settings.model_copy(update={"worker_id": worker_id})
        app = self.harness.app
        return Scheduler(app.db, app.audit, app.runner, app.rules, settings, clock=self.clock)

    async def tick(self) -> Any:
        report = await self.scheduler.tick()
        while await self.mailer.deliver_due():
            pass
        await self.harness.app.flush_outbox()
        return report

    async def reply(self, contact_id: int, text: str) -> int:
        """The contact writes by email at the fake time, and the agent answers it."""
        async with self.db.transaction() as session:
            contact = await session.get(Contact, contact_id)
            assert contact is not None and contact.email is not None
            email = contact.email
        conversation_id = await self.harness.receive(text, email, channel="email")
        async with self.db.transaction() as session:
            newest = select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
            await session.execute(
                update(Message)
                .where(Message.id == newest.scalar_subquery())
                .values(created_at=self.clock())
            )
            pending = await pending_messages(session, conversation_id)
        await self.harness.app.runner.handle_inbound(conversation_id, pending)
        return conversation_id

    async def automatic(self) -> list[OutboxItem]:
        return await self.rows(OutboxItem, OutboxItem.automatic.is_(True))

    async def rows(self, model: type[Base], *where: Any) -> list[Any]:
        return await rows(self.db, model, *where)


@pytest.fixture
async def proactive(database_url: str) -> AsyncIterator[Proactive]:
    clock = FakeClock()
    harness = Harness(database_url, default_agent="tester", run_timeout_seconds=5)
    app = harness.app
    app.runner.clock = clock
    email = RecordingChannel(name="email")
    app.add_channel(email)
    for worker in app.outbox_workers.values():
        worker.clock = clock
    await app.start()
    await harness.add_agent()
    scheduler = Scheduler(app.db, app.audit, app.runner, app.rules, harness.settings, clock=clock)
    try:
        yield Proactive(
            harness,
            clock,
            scheduler,
            EventIntake(app.db, app.audit, clock=clock),
            email,
            app.outbox_workers["email"],
        )
    finally:
        await app.aclose()
