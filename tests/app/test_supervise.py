"""A channel that fails is restarted in the process; one that keeps failing ends it, loudly."""

from __future__ import annotations

import asyncio

import pytest

from bot.app.supervise import ChannelFailed, Supervision, supervise
from bot.app.wiring import serve
from bot.core.backoff import Backoff
from bot.store.models import AuditEvent
from tests.support.harness import Harness

FAST = Supervision(backoff=Backoff(initial=0.01, maximum=0.02), max_restarts=3)


class Flaky:
    """Fails `failures` times, then runs until cancelled (or returns, if `then_return`)."""

    def __init__(self, failures: int, *, then_return: bool = False) -> None:
        self.failures, self.then_return, self.starts = failures, then_return, 0

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise RuntimeError(f"boom {self.starts}")
        if not self.then_return:
            await asyncio.Event().wait()


async def _no_report(name: str, error: str, failures: int, delay: float) -> None:
    pass


async def test_a_failed_channel_is_restarted_with_each_failure_reported() -> None:
    reports: list[tuple[str, int]] = []

    async def report(name: str, error: str, failures: int, delay: float) -> None:
        reports.append((error, failures))

    flaky = Flaky(2, then_return=True)
    await asyncio.wait_for(supervise("flaky", flaky.run, report, FAST), timeout=5)
    assert flaky.starts == 3
    assert reports == [("RuntimeError: boom 1", 1), ("RuntimeError: boom 2", 2)]


async def test_a_channel_that_keeps_failing_gives_up_with_channel_failed() -> None:
    flaky = Flaky(100)
    with pytest.raises(ChannelFailed, match="boom 4"):
        await asyncio.wait_for(supervise("flaky", flaky.run, _no_report, FAST), timeout=5)
    assert flaky.starts == FAST.max_restarts + 1


async def test_a_report_that_fails_does_not_stop_the_restart() -> None:
    async def broken_report(name: str, error: str, failures: int, delay: float) -> None:
        raise OSError("database is down too")

    flaky = Flaky(1, then_return=True)
    await asyncio.wait_for(supervise("flaky", flaky.run, broken_report, FAST), timeout=5)
    assert flaky.starts == 2


async def test_serve_restarts_a_channel_audits_it_and_raises_when_it_gives_up(
    harness: Harness,
) -> None:
    recovering, hopeless = Flaky(1), Flaky(100)

    with pytest.raises(ChannelFailed):
        await asyncio.wait_for(serve(harness.app, [recovering.run, hopeless.run], FAST), 10)

    assert recovering.starts == 2  # restarted once, then ran until the shutdown
    restarts = await harness.rows(AuditEvent, AuditEvent.kind == "channel_restarted")
    assert len(restarts) == 1 + FAST.max_restarts


async def test_a_task_that_fails_while_being_stopped_is_stopped_not_restarted() -> None:
    """Found in CI: a stop cancelled the audit sealer, whose clean-up then failed on a locked
    database; the supervisor took that for a crash and restarted it, again and again, and
    the process never finished stopping."""
    starts = 0

    async def cleans_up_badly() -> None:
        nonlocal starts
        starts += 1
        try:
            await asyncio.Event().wait()
        finally:
            raise OSError("database is locked")

    supervised = asyncio.create_task(supervise("sealer", cleans_up_badly, _no_report, FAST))
    await asyncio.sleep(0.05)
    supervised.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(supervised, timeout=5)
    assert starts == 1
