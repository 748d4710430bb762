"""The one place where a provider's failure becomes crmbot's `ProviderError`.

Adapters only read their SDK's exception (HTTP status, the server's message, Retry-After);
what counts as retryable, what the message says and how it is redacted is decided here,
the same for every provider. It also decides what a provider's circuit breaker counts:
every `ProviderError` but a `RejectedRequest`, which is about one request, not the provider.
"""

from __future__ import annotations

from agents.providers.retry import RetryableProviderError
from bot.core.errors import ProviderError
from bot.core.providers import PROVIDERS, ProviderName
from bot.core.redact import Redactor

MAX_DETAIL = 300
REQUEST_STATUSES = frozenset({400, 413, 422})
"""Statuses that reject this request (too long, a schema the API refuses) while the provider
is up: another request may well succeed, so they do not count against its health."""
UNREADABLE = (ValueError, TypeError, AttributeError, KeyError)
"""What reading a 200 whose body is empty, not JSON or not the documented shape raises: the
SDKs build their response objects without validating them, so a body of `null` or `[]`
surfaces as an AttributeError far from the wire, and a cut one as a JSONDecodeError."""


class RejectedRequest(ProviderError):
    """The provider answered and refused this one request (400, 413, 422)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False)


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
        return ProviderError(f"{detail}; check {PROVIDERS[provider].key_setting}", retryable=False)
    if status in REQUEST_STATUSES:
        return RejectedRequest(detail)
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


def unreadable(provider: ProviderName, error: Exception | str, redactor: Redactor) -> ProviderError:
    """A 200 whose body could not be read as an answer: retryable, since a proxy that cut the
    body short or a server that glitched will most likely answer properly next time."""
    what = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    detail = redactor.text(f"{provider} sent an answer that could not be read: {what}")
    return RetryableProviderError(detail[:MAX_DETAIL])
