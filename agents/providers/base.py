"""The provider interface: one required async method, everything else has a default."""

from __future__ import annotations

from abc import ABC, abstractmethod

from agents.messages import ModelRequest, ModelTurn


class Provider(ABC):
    """A model provider. Owns its SDK client and credentials; converts formats itself.

    Implementations map their SDK's errors to `bot.errors.ProviderError` in one place and
    retry 429/5xx/timeouts with the shared backoff before giving up.
    """

    name: str = "provider"

    @abstractmethod
    async def complete(self, request: ModelRequest) -> ModelTurn:
        """Run one completion with native tool calling and return the converted turn."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release network resources."""
