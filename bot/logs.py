"""Logging set-up: named loggers, secrets redacted, run context on every line of a run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from bot.redact import RedactingFilter, Redactor

_context: ContextVar[str] = ContextVar("crmbot_log_context", default="")


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach `key=value` fields (run id, contact id) to every log line inside the block."""
    rendered = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    token = _context.set(f"[{rendered}] " if rendered else "")
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _context.get()
        return True


def configure_logging(level: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(context)s%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiosqlite", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
