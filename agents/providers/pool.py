"""One provider object per provider name, shared by every run of the process, each network
provider behind a circuit breaker of its own."""

from __future__ import annotations

from agents.budget import Price, price_for
from agents.definition import AgentDefinition
from agents.embeddings import Semantic, build_embedder
from agents.providers.base import Provider
from agents.providers.breaker import CircuitBreaker
from agents.providers.failover import Failover, Fallback
from agents.providers.registry import build_provider
from agents.providers.switches import SwitchLog
from agents.run_state import RunState
from bot.core.settings import Settings
from bot.store.audit import AuditLog
from bot.store.db import Database


class ProviderPool:
    """One provider object per provider name, built on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self.switches = SwitchLog(settings)
        self._semantic: Semantic | None = None
        self._semantic_built = False

    def register(self, name: str, provider: Provider) -> None:
        """Use `provider` for `name` instead of building one from settings."""
        self._providers[name] = provider

    def record_switches(self, db: Database, audit: AuditLog) -> None:
        """Audit provider switches in `db` (and alert staff there); otherwise they are logged."""
        self.switches.attach(db, audit)

    def for_agent(
        self, agent: AgentDefinition, run: RunState | None = None
    ) -> tuple[Provider, str]:
        """The agent's provider and model. A network provider comes behind its breaker, with
        LLM_FALLBACK_PROVIDER to take over; the calls `run` makes are audited in the run."""
        name = agent.provider or self.settings.llm_provider or "offline"
        model = agent.model or self.settings.model_for(name)
        if name == "offline":  # it cannot fail the way a network provider does
            return self._provider(name), model
        failover = Failover(
            self._provider(name), self.breaker(name), self._fallback(name), self.switches, run
        )
        return failover, model

    def breaker(self, name: str) -> CircuitBreaker:
        """The process's breaker of the provider `name`."""
        if name not in self._breakers:
            self._breakers[name] = CircuitBreaker(
                name,
                threshold=self.settings.llm_breaker_failures,
                cooldown=self.settings.llm_breaker_cooldown_seconds,
            )
        return self._breakers[name]

    def _fallback(self, name: str) -> Fallback | None:
        fallback, model = self.settings.llm_fallback_provider, self.settings.fallback_model
        if fallback is None or model is None or fallback == name:
            return None
        return Fallback(self._provider(fallback), model)

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = build_provider(self.settings, name)
        return self._providers[name]

    def price(self, model: str) -> Price:
        s = self.settings
        if s.llm_price_input_per_mtok is None or s.llm_price_output_per_mtok is None:
            return price_for(model)
        return price_for(model, Price(s.llm_price_input_per_mtok, s.llm_price_output_per_mtok))

    def semantic(self) -> Semantic | None:
        """KB_EMBEDDINGS' semantic search, built on first use; None when it is off."""
        if not self._semantic_built:
            embedder = build_embedder(self.settings)
            self._semantic = Semantic.of(embedder) if embedder is not None else None
            self._semantic_built = True
        return self._semantic

    def use_semantic(self, semantic: Semantic | None) -> None:
        """Use `semantic` instead of building one from settings."""
        self._semantic, self._semantic_built = semantic, True

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        if self._semantic is not None:
            await self._semantic.embedder.aclose()
