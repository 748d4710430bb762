"""One run at a time per conversation, in any number of workers; each message answered once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from agents.messages import ModelRequest, ModelTurn
from bot.store import leases
from bot.store.inbox import mark_handled
from bot.store.models import AuditEvent, Message
from tests.support.harness import Harness
from tests.support.models import FunctionModel, call, turn


def contact_of(request: ModelRequest) -> str:
    """Which contact (so which conversation) a request is about, from the prompt's card."""
    card = request.system.split("Contact record:\n", 1)[1].split("\n", 1)[0]
    return str(json.loads(card)["name"])


class ConcurrencyProbe:
    """A model that finishes each run after `delay`, recording how many runs overlapped."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.active: Counter[str] = Counter()
        self.max_per_conversation = 0
        self.max_overall = 0
        self.gate: asyncio.Event | None = None
        """If set, the first request waits for it (to hold a run open while messages arrive)."""
        self.meet = 0
        """If set, each request waits (up to 5 s) until this many requests are in flight."""
        self._met = asyncio.Event()
        self.called = asyncio.Event()
        """Set once the model has been asked anything (a run has read its pending messages)."""

    def model(self) -> FunctionModel:
        return FunctionModel(self.respond)

    async def respond(self, request: ModelRequest) -> ModelTurn:
        who = contact_of(request)
        self.called.set()
        self.active[who] += 1
        self.max_per_conversation = max(self.max_per_conversation, self.active[who])
        self.max_overall = max(self.max_overall, self.active.total())
        if self.meet and self.active.total() >= self.meet:
            self._met.set()
        try:
            if self.gate is not None:
                gate, self.gate = self.gate, None
                await asyncio.wait_for(gate.wait(), timeout=5)
            if self.meet:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._met.wait(), timeout=5)
            await asyncio.sleep(self.delay)
        finally:
            self.active[who] -= 1
        return turn("", call("finish", {"summary": "noted"}))


async def start(database_url: str, worker_id: str, probe: ConcurrencyProbe) -> Harness:
    harness = Harness(
        database_url, default_agent="tester", worker_id=worker_id, run_timeout_seconds=10
    )
    await harness.app.start()
    await harness.add_agent()
    harness.use_model(probe.model())
    return harness


@pytest.fixture
def probe() -> ConcurrencyProbe:
    return ConcurrencyProbe()


@pytest.fixture
async def harness(database_url: str, probe: ConcurrencyProbe) -> AsyncIterator[Harness]:
    h = await start(database_url, "worker-1", probe)
    try:
        yield h
    finally:
        await h.app.aclose()


@pytest.fixture
async def second_process(database_url: str, probe: ConcurrencyProbe) -> AsyncIterator[Harness]:
    """Another worker on the same database, as a second crmbot process would be."""
    h = await start(database_url, "worker-2", probe)
    try:
        yield h
    finally:
        await h.app.aclose()


@pytest.fixture
def acquisitions(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times a lease was taken with a transaction of its own (`try_acquire`)."""
    counts: Counter[str] = Counter()
    try_acquire = leases.try_acquire

    async def counted(*args: Any, **kwargs: Any) -> bool:
        counts["try_acquire"] += 1
        return await try_acquire(*args, **kwargs)

    monkeypatch.setattr(leases, "try_acquire", counted)
    return counts


async def run_inputs(harness: Harness) -> list[list[int]]:
    """For each run, in the order the runs started, the ids of the messages it was given."""
    started = await harness.rows(AuditEvent, AuditEvent.kind == "run_started")
    return [[m["id"] for m in e.payload["input"]] for e in sorted(started, key=lambda e: e.id)]


async def inbound_ids(harness: Harness) -> list[int]:
    async with harness.db.transaction() as session:
        query = select(Message.id).where(Message.direction == "in").order_by(Message.id)
        return list((await session.execute(query)).scalars())


async def unhandled(harness: Harness) -> list[Message]:
    return await harness.rows(Message, Message.direction == "in", Message.handled_at.is_(None))


async def assert_each_message_answered_once_in_order(harness: Harness) -> None:
    assert await unhandled(harness) == []
    given = [message_id for run in await run_inputs(harness) for message_id in run]
    assert given == await inbound_ids(harness)


async def test_messages_arriving_during_a_run_are_answered_by_the_next_run_in_order(
    harness: Harness, probe: ConcurrencyProbe, acquisitions: Counter[str]
) -> None:
    probe.gate = gate = asyncio.Event()
    dispatcher = harness.app.dispatcher
    dispatcher.notify(await harness.receive("message 0"))
    await asyncio.wait_for(probe.called.wait(), timeout=5)  # run 1 is under way with message 0
    for i in range(1, 5):
        dispatcher.notify(await harness.receive(f"message {i}"))
    gate.set()
    await dispatcher.idle()

    ids = await inbound_ids(harness)
    assert await run_inputs(harness) == [ids[:1], ids[1:]]
    assert probe.max_per_conversation == 1
    # The second run found the four in the first run's last look, under the same lease:
    # their notifications cost no pass of their own.
    assert acquisitions["try_acquire"] == 1


async def test_a_burst_to_one_conversation_never_runs_it_twice_at_once(
    harness: Harness, probe: ConcurrencyProbe
) -> None:
    dispatcher = harness.app.dispatcher
    for i in range(10):
        dispatcher.notify(await harness.receive(f"message {i}"))
        await asyncio.sleep(0.005 * (i % 3))

    await dispatcher.idle()

    assert probe.max_per_conversation == 1
    assert len(await run_inputs(harness)) > 1
    await assert_each_message_answered_once_in_order(harness)


async def test_two_workers_never_run_one_conversation_at_once(
    harness: Harness,
    second_process: Harness,
    probe: ConcurrencyProbe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.dispatcher")
    workers = [harness.app.dispatcher, second_process.app.dispatcher]
    # First a certain contention: one worker holds a run open while the other is told too.
    probe.gate = gate = asyncio.Event()
    held = await harness.receive("message held")
    workers[0].notify(held)
    await asyncio.wait_for(probe.called.wait(), timeout=5)
    workers[1].notify(held)
    await workers[1].idle()
    gate.set()
    for i in range(8):
        conversation_id = await harness.receive(f"message {i}")
        for dispatcher in workers:
            dispatcher.notify(conversation_id)
        await asyncio.sleep(0.005 * (i % 3))

    for _ in range(10):  # the sweeps pick up anything a lease-refused notify left behind
        await asyncio.gather(*(d.idle() for d in workers))
        if not await unhandled(harness):
            break
        for dispatcher in workers:
            await dispatcher.sweep_once()

    assert probe.max_per_conversation == 1
    assert "is leased by another worker" in caplog.text  # the two really did contend
    await assert_each_message_answered_once_in_order(harness)


async def test_different_conversations_run_at_the_same_time(
    harness: Harness, probe: ConcurrencyProbe
) -> None:
    probe.meet = 2
    dispatcher = harness.app.dispatcher
    for name in ("Ann", "Bob", "Cy"):
        dispatcher.notify(await harness.receive(f"hello from {name}", contact=name))

    await dispatcher.idle()

    assert probe.max_overall > 1
    assert probe.max_per_conversation == 1
    assert await unhandled(harness) == []


async def test_a_sweep_picks_up_a_conversation_nobody_was_told_about(harness: Harness) -> None:
    await harness.receive("recorded by a worker that crashed before notifying")
    dispatcher = harness.app.dispatcher

    assert await dispatcher.sweep_once() == 1
    await dispatcher.idle()

    assert await unhandled(harness) == []
    assert len(await run_inputs(harness)) == 1
    assert await dispatcher.sweep_once() == 0


async def test_a_conversation_leased_by_a_dead_worker_is_taken_over_once_its_lease_lapses(
    harness: Harness,
) -> None:
    conversation_id = await harness.receive("hello?")
    async with harness.db.transaction() as session:  # a worker took it, then died: no beats
        assert await leases.try_acquire(session, f"conversation:{conversation_id}", "dead", 0.3)
    dispatcher = harness.app.dispatcher

    dispatcher.notify(conversation_id)
    await dispatcher.idle()
    assert await unhandled(harness) != []  # refused while the dead worker's lease held

    await asyncio.sleep(0.35)
    await dispatcher.sweep_once()
    await dispatcher.idle()
    assert await unhandled(harness) == []


async def test_a_turn_taken_by_the_intake_starts_the_run_without_a_commit_of_its_own(
    harness: Harness, acquisitions: Counter[str]
) -> None:
    dispatcher = harness.app.dispatcher
    conversation_id = await harness.receive("hello", take_turn=True)
    async with harness.db.reading() as session:
        assert await leases.holder(session, f"conversation:{conversation_id}") == "worker-1"

    dispatcher.notify(conversation_id)
    await dispatcher.idle()

    assert acquisitions["try_acquire"] == 0  # seen as ours with a read: no transaction to take it
    await assert_each_message_answered_once_in_order(harness)
    async with harness.db.reading() as session:  # given back in the run's closing commit
        assert await leases.holder(session, f"conversation:{conversation_id}") is None


async def test_a_message_one_worker_records_while_another_runs_the_conversation_goes_to_that_run(
    harness: Harness, second_process: Harness, probe: ConcurrencyProbe
) -> None:
    # Webhooks reach any worker: the second one records a message for a conversation the
    # first is answering. Its intake cannot take the turn, so the first's next run answers.
    probe.gate = gate = asyncio.Event()
    conversation_id = await harness.receive("first", take_turn=True)
    harness.app.dispatcher.notify(conversation_id)
    await asyncio.wait_for(probe.called.wait(), timeout=5)
    assert await second_process.receive("second", take_turn=True) == conversation_id
    second_process.app.dispatcher.notify(conversation_id)
    await second_process.app.dispatcher.idle()  # refused: the first worker holds the turn
    gate.set()
    await harness.app.dispatcher.idle()

    ids = await inbound_ids(harness)
    assert await run_inputs(harness) == [ids[:1], ids[1:]]
    assert probe.max_per_conversation == 1
    await assert_each_message_answered_once_in_order(harness)


async def test_a_turn_the_intake_took_is_not_left_held_when_nothing_is_pending(
    harness: Harness,
) -> None:
    # The message was answered by a run that began before the intake's commit took the lease
    # again (or another worker answered it): the driver finds nothing and gives it back.
    conversation_id = await harness.receive("hello", take_turn=True)
    async with harness.db.transaction() as session:
        await mark_handled(session, [m.id for m in await unhandled(harness)], None)

    harness.app.dispatcher.notify(conversation_id)
    await harness.app.dispatcher.idle()

    async with harness.db.reading() as session:
        assert await leases.holder(session, f"conversation:{conversation_id}") is None
