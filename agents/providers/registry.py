"""Choose and build a provider from settings; adapters are imported only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core.errors import ConfigurationError
from bot.core.providers import PROVIDER_NAMES

if TYPE_CHECKING:
    from agents.providers.base import Provider
    from bot.core.settings import Settings


def build_provider(settings: Settings, name: str | None = None) -> Provider:
    """Build the provider `name` (default: the configured one) with its credentials."""
    name = name or settings.llm_provider or "offline"
    common = {
        "base_url": settings.base_url(name) if name != "offline" else None,
        "timeout": settings.llm_timeout_seconds,
        "max_retries": settings.llm_max_retries,
    }
    if name == "offline":
        from agents.providers.offline import OfflineProvider

        return OfflineProvider()
    if name == "openai":
        from agents.providers.openai import OpenAIProvider

        return OpenAIProvider(settings.api_key("openai"), **common)  # type: ignore[arg-type]
    if name == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider(settings.api_key("anthropic"), **common)  # type: ignore[arg-type]
    if name == "gemini":
        from agents.providers.gemini import GeminiProvider

        return GeminiProvider(settings.api_key("gemini"), **common)  # type: ignore[arg-type]
    raise ConfigurationError(f"unknown provider {name!r}; expected one of {PROVIDER_NAMES}")
