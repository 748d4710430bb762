"""Retry-After values in both forms RFC 9110 allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from agents.providers.retry import parse_retry_after


def test_delta_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0") == 0.0


def test_http_date_in_the_future() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after(when)
    assert seconds is not None
    assert 25 <= seconds <= 31


def test_missing_or_garbage_means_use_our_backoff() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
