"""The one place where a provider's failure becomes crmbot's `ProviderError`.

Adapters only read their SDK's exception (HTTP status, the server's message, Retry-After);
what counts as retryable, what the message says and how it is redacted is decided here,
the same for every provider.
"""

from __future__ import annotations

from agents.providers.retry import RetryableProviderError
from bot.core.errors import ProviderError
from bot.core.providers import PROVIDERS, ProviderName
from bot.core.redact import Redactor

MAX_DETAIL = 300


def http_error(
    provider: ProviderName,
    status: int,
    message: str,
    redactor: Redactor,
    *,
    retry_after: float | None = None,
    bad_key: bool = False,
) -> ProviderError:
    """An answer with an error status: 429, 408 and 5xx are retryable, the rest are not."""
    detail = redactor.text(f"{provider} returned HTTP {status}: {message}")[:MAX_DETAIL]
    if status == 429:
        return RetryableProviderError(detail, retry_after=retry_after)
    if status == 408 or status >= 500:
        return RetryableProviderError(detail)
    if status in (401, 403) or bad_key:
        detail += f"; check {PROVIDERS[provider].key_setting}"
    return ProviderError(detail, retryable=False)


def network_error(provider: ProviderName, error: Exception) -> ProviderError:
    """No answer at all (connection refused or dropped, timeout): retryable. The exception's
    text is left out: it can carry the request URL."""
    return RetryableProviderError(f"{provider} request failed: {type(error).__name__}")


def invalid(
    provider: ProviderName, error: Exception, redactor: Redactor, what: str
) -> ProviderError:
    """A request or answer the SDK could not handle: not retryable."""
    return ProviderError(redactor.text(f"{provider} {what}: {error}")[:MAX_DETAIL], retryable=False)
