"""A circuit breaker per provider: stop calling one that keeps failing, test it now and then.

Closed, calls go to the provider and failures in a row are counted; at the threshold the
breaker opens and calls go elsewhere (the fallback). After the cool-down the next call is
the probe: it alone goes to the provider while the others still go elsewhere. The probe's
success closes the breaker; its failure opens it for another cool-down.

Written here rather than taken from a library: purgatory, the maintained asyncio breaker, lets
every call through once the cool-down is over (hundreds of runs would all wait on a provider
that may still be down, where one probe is enough), reads the wall clock, and reports its
transitions through synchronous hooks; aiobreaker has had no release since 2021, and
pybreaker has no asyncio support. Three states and a counter fit in this module.

The state is the process's own: each worker learns of an outage from its own failures and
tests the recovery on its own, and deciding where a call goes costs no database round trip.
The event loop runs one coroutine at a time and nothing here awaits, so no lock is needed.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "probing"]
Change = Literal["opened", "probing", "closed", "reopened"]


class Route(enum.Enum):
    """Where one call goes."""

    PRIMARY = "primary"
    PROBE = "probe"
    """To the primary as the one test of an open breaker."""
    ELSEWHERE = "elsewhere"


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of the breaker's state, for the audit trail and the log."""

    change: Change
    provider: str
    failures: int
    """Failures in a row when it happened."""
    open_seconds: float = 0.0
    """How long the breaker had been open (for `closed` and `reopened`)."""


class CircuitBreaker:
    """The breaker of one provider in this process."""

    def __init__(
        self,
        provider: str,
        *,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider, self.threshold, self.cooldown, self.clock = (
            provider,
            threshold,
            cooldown,
            clock,
        )
        self.state: State = "closed"
        self.failures = 0
        self._opened_at = 0.0
        self._probe_after = 0.0

    def route(self) -> tuple[Route, Transition | None]:
        """Where the next call goes; the transition when it is the probe."""
        if self.state == "closed":
            return Route.PRIMARY, None
        if self.state == "open" and self.clock() >= self._probe_after:
            self.state = "probing"
            return Route.PROBE, self._transition("probing")
        return Route.ELSEWHERE, None

    def succeeded(self, route: Route) -> Transition | None:
        if route is Route.PROBE and self.state == "probing":
            closed = self._transition("closed")
            self.state, self.failures = "closed", 0
            return closed
        if route is Route.PRIMARY and self.state == "closed":
            self.failures = 0
        # A call sent before the breaker opened proves little about the provider now.
        return None

    def failed(self, route: Route) -> Transition | None:
        if route is Route.PROBE and self.state == "probing":
            self.failures += 1
            reopened = self._transition("reopened")
            self._open(keep_opened_at=True)
            return reopened
        if route is Route.PRIMARY and self.state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self._open()
                return self._transition("opened")
        return None

    def abandoned(self, route: Route) -> None:
        """The call ended without a verdict (cancelled, a request-specific refusal): a probe
        that says nothing lets the next call probe at once."""
        if route is Route.PROBE and self.state == "probing":
            self.state, self._probe_after = "open", self.clock()

    def _open(self, *, keep_opened_at: bool = False) -> None:
        now = self.clock()
        self.state, self._probe_after = "open", now + self.cooldown
        if not keep_opened_at:
            self._opened_at = now

    def _transition(self, change: Change) -> Transition:
        open_seconds = 0.0 if change == "opened" else self.clock() - self._opened_at
        return Transition(change, self.provider, self.failures, round(open_seconds, 3))
