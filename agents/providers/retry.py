"""One retry policy for every provider: exponential backoff with jitter, honouring Retry-After.

Adapters turn their SDK's exceptions into `ProviderError(retryable=...)` (and may attach the
server's `retry_after` seconds); this module decides whether and when to try again. The SDKs'
own retry loops are switched off so that retries happen, and are logged, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from bot.core.backoff import Backoff
from bot.core.errors import ProviderError

log = logging.getLogger("agents.providers")
T = TypeVar("T")


class RetryableProviderError(ProviderError):
    """A transient failure (429, 5xx, timeout, dropped connection)."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail, retryable=True)
        self.retry_after = retry_after


DEFAULT_BACKOFF = Backoff(initial=0.5, maximum=20.0, jitter=0.5)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wait(backoff: Backoff) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, RetryableProviderError) else None
        return backoff.delay(state.attempt_number, retry_after)

    return wait


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("provider call failed, retrying (attempt %d): %s", state.attempt_number, error)


async def call_with_retries(
    call: Callable[[], Awaitable[T]], *, max_retries: int, backoff: Backoff = DEFAULT_BACKOFF
) -> T:
    """Await `call()`, retrying `RetryableProviderError` up to `max_retries` times."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=_wait(backoff),
        retry=retry_if_exception(lambda exc: isinstance(exc, RetryableProviderError)),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")
