"""One provider object per provider name, shared by every run of the process."""

from __future__ import annotations

from agents.budget import Price, price_for
from agents.definition import AgentDefinition
from agents.providers.base import Provider
from agents.providers.registry import build_provider
from bot.core.settings import Settings


class ProviderPool:
    """One provider object per provider name, built on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}

    def register(self, name: str, provider: Provider) -> None:
        """Use `provider` for `name` instead of building one from settings."""
        self._providers[name] = provider

    def for_agent(self, agent: AgentDefinition) -> tuple[Provider, str]:
        name = agent.provider or self.settings.llm_provider or "offline"
        if name not in self._providers:
            self._providers[name] = build_provider(self.settings, name)
        return self._providers[name], agent.model or self.settings.model_for(name)

    def price(self, model: str) -> Price:
        s = self.settings
        if s.llm_price_input_per_mtok is None or s.llm_price_output_per_mtok is None:
            return price_for(model)
        return price_for(model, Price(s.llm_price_input_per_mtok, s.llm_price_output_per_mtok))

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
