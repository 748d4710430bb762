"""What every channel provides: delivery of outbox items, with a classified result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from bot.store.models import OutboxItem


@dataclass(frozen=True, slots=True)
class Sent:
    """Delivered; `external_id` is the channel's id for the sent message."""

    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Not delivered, safe to try again (rate limit, 5xx before the message was accepted)."""

    error: str
    after: float | None = None
    """Seconds the channel asked us to wait (Telegram's retry_after), if it said."""
    throttled: bool = False
    """Held back by our own rate limit before sending: not an attempt, never gives up.
    (`Channel.pace` is the place for that; this is for a limit found only inside `deliver`.)"""


@dataclass(frozen=True, slots=True)
class Failed:
    """Permanently refused (blocked by the user, bad address, 5xx SMTP reply)."""

    error: str
    unreachable: bool = False
    """The contact cannot be reached on this channel any more."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """The channel may or may not have delivered it (a timeout after sending); never resent."""

    error: str


DeliveryResult = Sent | RetryLater | Failed | Unknown


class Channel(ABC):
    """A channel adapter. `deliver` must classify every failure; it must not raise.

    The outbox worker asks `pace` first and only then marks the item `sending` and calls
    `deliver`, so an item held back by a rate limit is never mistaken for one in flight.
    """

    name: str
    max_in_flight: int | None = None
    """Sends this channel can have in flight at once (its connections); None: no limit of
    its own. The worker claims an item only once it has one, so no claimed item waits."""
    text_limit: int | None = None
    """Longest text one message may carry; longer texts are queued as several parts."""
    first_kinds: tuple[str, ...] = ()
    """Kinds of post (`meta.kind`) that go before any other conversation's waiting posts
    when this channel is backed up; within a conversation, the order is always kept."""

    async def pace(self, item: OutboxItem) -> float | None:
        """Take the rate-limit slot for sending `item` now; or the seconds to wait instead.

        Nothing is sent here. The default has no limit: go now. The slots are this process's:
        what must hold across every worker is `spacing`.
        """
        del item
        return None

    def spacing(self, item: OutboxItem) -> float | None:
        """The least seconds between two messages to `item.recipient` from any worker (one a
        second to a Telegram private chat), or None for no such limit.

        The outbox enforces it in the claim, against the last request that left for the
        recipient, so several workers sending to one chat keep to it together."""
        del item
        return None

    @abstractmethod
    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        """Send one outbox item to `item.recipient` (its slot is already taken)."""
