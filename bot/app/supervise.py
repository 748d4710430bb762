"""Keeping a channel up: a task that fails is restarted in the process, with backoff.

A channel that keeps failing right after each restart is given up on after `max_restarts`,
and `ChannelFailed` ends the process with a non-zero status so that a supervisor (systemd,
a container runtime) restarts it or tells someone. A channel that returns on its own (the
console at end of input) is done, not failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.core.backoff import Backoff
from bot.core.errors import CrmbotError

log = logging.getLogger("bot.supervise")
Start = Callable[[], Awaitable[None]]
Report = Callable[[str, str, int, float], Awaitable[None]]
"""Called before each restart with (task name, error, failures in a row, delay)."""


class ChannelFailed(CrmbotError):
    """A channel kept failing after its restarts; the process must end."""


@dataclass(frozen=True)
class Supervision:
    """How failures of a long-running task are met."""

    backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=60.0))
    max_restarts: int = 20
    """Consecutive failures tolerated before the process gives up."""
    healthy_seconds: float = 60.0
    """A task that ran this long before failing starts counting its failures afresh."""


async def supervise(
    name: str, start: Start, report: Report, policy: Supervision | None = None
) -> None:
    """Run `start()` until it returns, restarting it whenever it raises."""
    policy = policy or Supervision()
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        started = loop.time()
        try:
            await start()
            return
        except Exception as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Stopping: the task failed while it was being cancelled (its clean-up could
                # not reach the database, say). Restarting it would swallow the stop and keep
                # the process from ever ending.
                log.warning("%s failed while stopping: %s", name, error)
                raise asyncio.CancelledError from error
            failures = 1 if loop.time() - started >= policy.healthy_seconds else failures + 1
            detail = f"{type(error).__name__}: {error}"
            if failures > policy.max_restarts:
                log.critical("%s failed %s times in a row; giving up", name, failures - 1)
                raise ChannelFailed(f"{name} kept failing ({detail})") from error
            delay = policy.backoff.delay(failures)
            log.error("%s failed; restarting in %.1fs", name, delay, exc_info=error)
            await _report(report, name, detail, failures, delay)
            await asyncio.sleep(delay)


async def _report(report: Report, name: str, detail: str, failures: int, delay: float) -> None:
    try:
        await report(name, detail, failures, delay)
    except Exception:  # the store may be what failed; the restart must not depend on it
        log.exception("could not record the restart of %s", name)
