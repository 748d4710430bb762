"""What every provider behind an HTTP API shares: the key check, one retry loop, redaction."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from agents.messages import ModelRequest, ModelTurn
from agents.providers.base import Provider
from agents.providers.retry import DEFAULT_BACKOFF, call_with_retries
from bot.core.backoff import Backoff
from bot.core.errors import ConfigurationError
from bot.core.redact import Redactor


class RemoteProvider(Provider):
    """A provider whose SDK talks to a remote API.

    Subclasses build their SDK client (with the SDK's own retries off) and implement
    `_complete_once`, mapping SDK errors to ours with `self._redactor` keeping the key out.
    """

    key_setting: ClassVar[str]
    """The setting that holds the API key, named in the error when it is missing."""

    def __init__(
        self, api_key: str | None, *, max_retries: int, backoff: Backoff = DEFAULT_BACKOFF
    ) -> None:
        if not api_key:
            raise ConfigurationError(f"{self.key_setting} is required for the {self.name} provider")
        self.max_retries, self.backoff = max_retries, backoff
        self._redactor = Redactor([api_key])

    async def complete(self, request: ModelRequest) -> ModelTurn:
        return await call_with_retries(
            lambda: self._complete_once(request), max_retries=self.max_retries, backoff=self.backoff
        )

    @abstractmethod
    async def _complete_once(self, request: ModelRequest) -> ModelTurn:
        """One attempt: call the API, convert the answer; raise ProviderError subclasses."""
