"""A run's provider behind its circuit breaker: each call goes to the primary, or as the probe
of an open breaker, or to the fallback.

A call the primary fails (after its own retries) is served by the fallback at once, as is
every call while the breaker is open, so an outage costs the customer no handoff while another
provider can answer. Without a fallback, the primary's error stands and an open breaker fails
calls at once: the run hands off right away instead of waiting out retries and timeouts on a
provider known to be down.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from agents.messages import ModelRequest, ModelTurn
from agents.providers.base import Provider
from agents.providers.breaker import CircuitBreaker, Route
from agents.providers.errors import RejectedRequest
from agents.providers.switches import SwitchLog
from agents.run_state import RunState
from bot.core.errors import ProviderError

log = logging.getLogger("agents.providers")


@dataclass(frozen=True, slots=True)
class Fallback:
    """The provider that takes over, and the model it is asked for (LLM_FALLBACK_MODEL)."""

    provider: Provider
    model: str


class Failover(Provider):
    """One run's view of its provider; built per run (`ProviderPool.for_agent`), the breaker
    shared by every run of the process.

    `name` is the provider that answered the latest call, so the loop's record of a call names
    the provider that really answered it.
    """

    def __init__(
        self,
        primary: Provider,
        breaker: CircuitBreaker,
        fallback: Fallback | None,
        switches: SwitchLog,
        run: RunState | None = None,
    ) -> None:
        self.primary, self.breaker, self.fallback = primary, breaker, fallback
        self.switches, self.run = switches, run
        self.name = primary.name

    async def complete(self, request: ModelRequest) -> ModelTurn:
        route, probing = self.breaker.route()
        await self.switches.transition(probing, self.run)
        if route is Route.ELSEWHERE:
            return await self._elsewhere(request, f"the {self.primary.name} circuit is open", None)
        try:
            turn = await self.primary.complete(request)
        except RejectedRequest:
            # Refused for what this request is: says nothing about the provider's health, and
            # another provider is no more likely to accept it.
            self.breaker.abandoned(route)
            raise
        except ProviderError as error:
            await self.switches.transition(self.breaker.failed(route), self.run, error)
            return await self._elsewhere(request, error.detail, error)
        except BaseException:  # cancelled (the run's time is up) or a bug: no verdict
            self.breaker.abandoned(route)
            raise
        await self.switches.transition(self.breaker.succeeded(route), self.run)
        await self._serve_from(self.primary.name, request.model, "it answers again")
        return turn

    async def _elsewhere(
        self, request: ModelRequest, reason: str, error: ProviderError | None
    ) -> ModelTurn:
        if self.fallback is None:
            if error is not None:
                raise error
            raise ProviderError(
                f"{reason} after {self.breaker.failures} failed calls in a row, and no "
                "LLM_FALLBACK_PROVIDER is set",
                retryable=True,
            )
        fallback = self.fallback
        await self._serve_from(fallback.provider.name, fallback.model, reason)
        try:
            return await fallback.provider.complete(
                dataclasses.replace(request, model=fallback.model)
            )
        except ProviderError as failed:
            raise ProviderError(
                f"{reason}; the fallback {fallback.provider.name} failed too: {failed.detail}",
                retryable=failed.retryable,
            ) from failed

    async def _serve_from(self, provider: str, model: str, reason: str) -> None:
        if provider != self.name:
            await self.switches.switched(self.run, provider, model, self.name, reason)
            self.name = provider
