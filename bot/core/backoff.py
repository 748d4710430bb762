"""One backoff shape for every retry in crmbot: deliveries, polling, IMAP, providers, restarts.

Exponential from `initial`, capped at `maximum`, with proportional jitter so that workers that
failed together do not retry together. A server that says when to come back (Retry-After,
Telegram's retry_after) is believed, up to `retry_after_cap`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 300.0
    max_attempts: int = 10
    """Attempts before a caller gives up (each caller decides what giving up means)."""
    jitter: float = 0.2
    """Spread as a fraction of the delay: 0.2 gives 0.8x to 1.2x."""
    retry_after_cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        base = min(self.initial * 2 ** max(attempt - 1, 0), self.maximum)
        return float(base * random.uniform(1 - self.jitter, 1 + self.jitter))
