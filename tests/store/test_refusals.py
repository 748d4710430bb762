"""Refusals are audited as one count per source, reason and minute."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from bot.store.audit import AuditLog, verify_chain
from bot.store.db import Database
from bot.store.models import AuditEvent
from bot.store.refusals import Refusals
from tests.support.telegram_rig import eventually

START = 1_700_000_020.0  # 22:13:40 UTC, 20 s before a minute ends


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _rows(db: Database) -> list[AuditEvent]:
    async with db.transaction() as session:
        query = select(AuditEvent).where(AuditEvent.kind == "refused").order_by(AuditEvent.id)
        return list((await session.execute(query)).scalars())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def refusals(db: Database, clock: Clock) -> Refusals:
    return Refusals(db, AuditLog(), clock=clock)


async def test_refusals_of_one_minute_become_one_row_when_it_has_passed(
    refusals: Refusals, db: Database, clock: Clock
) -> None:
    for n in range(100):
        await refusals.refuse("telegram:webhook", "wrong secret", {"remote": f"10.0.0.{n % 7}"})
        clock.now += 0.1
    assert await _rows(db) == []
    clock.now += 30
    await refusals.refuse("telegram:webhook", "wrong secret")
    [row] = await _rows(db)
    assert row.actor == "telegram:webhook"
    assert row.payload["count"] == 100
    assert row.payload["reason"] == "wrong secret"
    assert row.payload["minute"] == "2023-11-14T22:13:00+00:00"
    assert row.payload["first_at"] == "2023-11-14T22:13:40+00:00"
    assert row.payload["last_at"] == "2023-11-14T22:13:49+00:00"
    assert len(row.payload["samples"]) == 5
    await refusals.aclose()
    _, second = await _rows(db)
    assert second.payload["count"] == 1


async def test_each_source_and_reason_has_a_count_of_its_own(
    refusals: Refusals, db: Database
) -> None:
    await refusals.refuse("telegram:webhook", "wrong secret")
    await refusals.refuse("telegram:webhook", "wrong secret")
    await refusals.refuse("telegram:button", "not staff", {"user": 9})
    await refusals.refuse("telegram:webhook", "bad path")
    await refusals.aclose()
    counts = {
        (r.payload["source"], r.payload["reason"]): r.payload["count"] for r in await _rows(db)
    }
    assert counts == {
        ("telegram:webhook", "wrong secret"): 2,
        ("telegram:button", "not staff"): 1,
        ("telegram:webhook", "bad path"): 1,
    }
    async with db.transaction() as session:
        assert (await verify_chain(session))[1] == []


async def test_only_the_first_refusal_of_a_minute_is_logged(
    refusals: Refusals, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.refusals"):
        for _ in range(50):
            await refusals.refuse("telegram:webhook", "wrong secret")
        clock.now += 60
        await refusals.refuse("telegram:webhook", "wrong secret")
    assert len(caplog.records) == 2
    await refusals.aclose()


async def test_a_minute_is_written_when_it_ends_without_further_refusals(
    db: Database, clock: Clock
) -> None:
    clock.now = START + 19.8  # 0.2 s before the minute ends
    refusals = Refusals(db, AuditLog(), clock=clock)
    await refusals.refuse("telegram:webhook", "wrong secret")
    clock.now += 1
    [row] = await eventually(lambda: _rows(db), within=3)
    assert row.payload["count"] == 1
    await refusals.aclose()
    assert len(await _rows(db)) == 1


async def test_counts_survive_a_failed_write(
    refusals: Refusals, db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await refusals.refuse("telegram:webhook", "wrong secret")

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database is down")

    monkeypatch.setattr(refusals.audit, "append", broken)
    clock.now += 60
    await refusals.refuse("telegram:webhook", "wrong secret")
    monkeypatch.undo()
    await refusals.aclose()
    assert sorted(r.payload["count"] for r in await _rows(db)) == [1, 1]
