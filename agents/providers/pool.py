"""One provider object per provider name, shared by every run of the process."""

from __future__ import annotations

from agents.budget import Price, price_for
from agents.definition import AgentDefinition
from agents.embeddings import Semantic, build_embedder
from agents.providers.base import Provider
from agents.providers.registry import build_provider
from bot.core.settings import Settings


class ProviderPool:
    """One provider object per provider name, built on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, Provider] = {}
        self._semantic: Semantic | None = None
        self._semantic_built = False

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
