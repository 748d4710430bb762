"""A worker that dies mid-pass leaves unknown only the sends whose request had started.

Each item is marked `sending` right before its own request and its outcome is recorded right
after, so a kill can catch at most the sends in flight. A kill is simulated by abandoning a
pass whose sends are held at a gate: the pass never resumes, as after SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from bot.store.db import Database
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Sent
from tests.support.outbox import (
    CHANNEL,
    Chat,
    GatedChannel,
    heartbeats_stop,
    new_chat,
    queue,
    statuses,
    time_passes,
    worker,
)
from tests.support.telegram_rig import eventually


@pytest.fixture
async def chats(db: Database) -> list[Chat]:
    return [await new_chat(db, name) for name in ("Ann", "Bob", "Cid")]


@contextlib.asynccontextmanager
async def in_background(pass_: Coroutine[Any, Any, int]) -> AsyncIterator[asyncio.Task[int]]:
    """Run a delivery pass as a task; whatever is left of it is cancelled at the end."""
    task = asyncio.create_task(pass_)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def reached(db: Database, expected: dict[str, str]) -> bool:
    return await statuses(db, *expected) == expected


async def deliver_everything(db: Database, channel: Channel, worker_id: str = "survivor") -> None:
    sender = worker(db, channel, worker_id=worker_id)
    while await sender.deliver_due():
        pass


async def test_each_outcome_is_recorded_while_a_slow_send_is_still_in_flight(
    db: Database, chats: list[Chat]
) -> None:
    for chat, key in zip(chats, ("a1", "b1", "c1"), strict=True):
        await queue(db, chat, key)
    channel = GatedChannel(hold_send={"b1"})

    async with in_background(worker(db, channel).deliver_due()) as pass_:
        in_flight = {"a1": "sent", "b1": "sending", "c1": "sent"}
        await eventually(lambda: reached(db, in_flight))
        assert not pass_.done()
        channel.release.set()
        assert await pass_ == 3

    assert await statuses(db, "b1") == {"b1": "sent"}


async def test_an_item_waiting_for_one_of_the_channels_connections_is_not_claimed_yet(
    db: Database, chats: list[Chat]
) -> None:
    ann, bob, _ = chats
    await queue(db, ann, "a1")
    await queue(db, bob, "b1")
    channel = GatedChannel(hold_send={"a1", "b1"})
    channel.max_in_flight = 1

    async with in_background(worker(db, channel).deliver_due()) as pass_:
        await eventually(lambda: channel.started == ["a1"])
        assert await statuses(db, "a1", "b1") == {"a1": "sending", "b1": "pending"}
        channel.release.set()
        assert await pass_ == 2


async def test_after_a_kill_mid_pass_only_the_send_that_had_started_is_unknown(
    db: Database, chats: list[Chat]
) -> None:
    ann, bob, cid = chats
    for chat, key in ((ann, "a1"), (ann, "a2"), (bob, "b1"), (cid, "c1")):
        await queue(db, chat, key)
    dying = GatedChannel(hold_send={"a1"}, hold_pace={"b1", "c1"})

    async with in_background(worker(db, dying, worker_id="dead").deliver_due()):
        # a1's request is out; b1 and c1 wait for a rate-limit slot. Then: SIGKILL.
        await eventually(lambda: dying.started == ["a1"])
        assert await statuses(db, "a1", "b1", "c1") == {
            "a1": "sending",
            "b1": "pending",
            "c1": "pending",
        }
        await time_passes(db, OutboxItem.status == "sending")  # the dead worker's claim expires
        survivor = GatedChannel()
        await deliver_everything(db, survivor)

    assert await statuses(db, "a1", "a2", "b1", "c1") == {
        "a1": "unknown",
        "a2": "sent",
        "b1": "sent",
        "c1": "sent",
    }
    assert sorted(survivor.started) == ["a2", "b1", "c1"]


async def test_a_dead_workers_send_is_unknown_once_its_lease_lapses_not_after_the_whole_claim(
    db: Database, chats: list[Chat]
) -> None:
    ann, bob, _ = chats
    await queue(db, ann, "a1")
    await queue(db, bob, "b1")
    stuck = GatedChannel(hold_send={"a1"})

    async with in_background(worker(db, stuck, worker_id="dying", lease_seconds=60).deliver_due()):
        await eventually(lambda: reached(db, {"a1": "sending", "b1": "sent"}))
        await queue(db, ann, "a2")
        await queue(db, bob, "b2")
        survivor = GatedChannel()

        await deliver_everything(db, survivor)  # the first worker is alive: a1 may still land
        assert await statuses(db, "a1", "a2", "b2") == {
            "a1": "sending",
            "a2": "pending",  # after a1, in order
            "b2": "sent",  # other conversations never wait
        }

        await heartbeats_stop(db, "dying")  # killed: its claim has most of 120 s to run
        await deliver_everything(db, survivor)
        assert await statuses(db, "a1", "a2") == {"a1": "unknown", "a2": "sent"}
    assert survivor.started == ["b2", "a2"]


class SharedChannel(Channel):
    """One of two workers' channels: both must have read every candidate before any sends."""

    name = CHANNEL

    def __init__(self, both_read: asyncio.Barrier, delivered: list[str]) -> None:
        self.both_read, self.delivered = both_read, delivered
        self.waited = False

    async def pace(self, item: OutboxItem) -> float | None:
        # A worker paces after reading its candidates; the first pace of each waits for the
        # other's, so both have read the same candidates before either claims one.
        if not self.waited:
            self.waited = True
            await self.both_read.wait()
        return None

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        self.delivered.append(item.idempotency_key)
        return Sent(None)


async def test_two_workers_reading_the_same_candidates_send_each_item_once(
    db: Database, database_url: str
) -> None:
    keys = [f"k{n}" for n in range(5)]
    for key in keys:
        await queue(db, await new_chat(db, key), key)
    both_read = asyncio.Barrier(2)
    delivered: list[str] = []
    other = Database(database_url)  # as another process would, on its own connections
    try:
        passes = [
            worker(each, SharedChannel(both_read, delivered), worker_id=f"w{n}").deliver_due()
            for n, each in enumerate((db, other))
        ]
        attempted = await asyncio.wait_for(asyncio.gather(*passes), timeout=30)
    finally:
        await other.dispose()

    assert sorted(delivered) == keys
    assert sum(attempted) == len(keys)
    assert set((await statuses(db, *keys)).values()) == {"sent"}


async def test_a_pass_only_reads_unless_a_sender_died_and_then_its_queue_moves_on_at_once(
    db: Database, chats: list[Chat]
) -> None:
    """Passes run after every run and every poll: one that finds nothing to do, or a claim to
    make, writes nothing itself. A dead sender's item is still expired by the next pass,
    which then sends what was queued behind it."""
    ann = chats[0]
    commits = 0

    def counted(_connection: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(db.engine.sync_engine, "commit", counted)
    try:
        idle = worker(db, GatedChannel())
        assert await idle.deliver_due() == 0
        assert commits == 0

        await queue(db, ann, "a1")
        await queue(db, ann, "a2")
        dying = GatedChannel(hold_send={"a1"})
        async with in_background(worker(db, dying, worker_id="dead").deliver_due()):
            await eventually(lambda: dying.started == ["a1"])
            await time_passes(db, OutboxItem.status == "sending")
            survivor = GatedChannel()
            assert await worker(db, survivor).deliver_due() == 1  # in the same pass
    finally:
        event.remove(db.engine.sync_engine, "commit", counted)

    assert await statuses(db, "a1", "a2") == {"a1": "unknown", "a2": "sent"}
    assert survivor.started == ["a2"]


async def test_a_claim_whose_commit_answer_was_lost_is_given_back_and_sent_not_flagged(
    db: Database, chats: list[Chat], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the PostgreSQL restart test: the connection went during the claim's commit,
    which had landed. The item sat `sending` until its claim ran out and was then flagged to
    staff as "may not have been delivered", though its request never left."""
    await queue(db, chats[0], "a1")
    channel = GatedChannel()
    sender = worker(db, channel)
    submit = sender._writes.submit
    cut = True

    def committed_then_cut(write: Any) -> asyncio.Future[Any]:
        """The first write (the claim) commits, and its caller hears the connection went."""
        nonlocal cut
        done = submit(write)
        if not cut:
            return done
        cut = False
        heard: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        reset = OperationalError("COMMIT", None, ConnectionResetError("connection reset"))
        done.add_done_callback(lambda _: heard.set_exception(reset))
        return heard

    monkeypatch.setattr(sender._writes, "submit", committed_then_cut)
    assert await sender.deliver_due() == 0  # the pass logs the failure and goes on
    assert await statuses(db, "a1") == {"a1": "pending"}
    assert channel.started == []

    assert await sender.deliver_due() == 1
    assert await statuses(db, "a1") == {"a1": "sent"}
    assert channel.started == ["a1"]
