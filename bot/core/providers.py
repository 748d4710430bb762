"""The one table of model providers: their names, key settings and default models.

Settings, agent definitions and the provider registry all read it, so adding a provider
is one row here plus its adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ProviderName = Literal["openai", "anthropic", "gemini", "offline"]
PROVIDER_NAMES: tuple[ProviderName, ...] = get_args(ProviderName)


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    default_model: str
    key_setting: str | None
    """The environment variable that holds its API key; None for the offline provider."""


PROVIDERS: dict[ProviderName, ProviderInfo] = {
    "openai": ProviderInfo("gpt-4o-mini", "OPENAI_API_KEY"),
    "anthropic": ProviderInfo("claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
    "gemini": ProviderInfo("gemini-2.0-flash", "GEMINI_API_KEY"),
    "offline": ProviderInfo("offline-policy", None),
}
