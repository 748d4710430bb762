"""Logging set-up: named loggers, secrets redacted, run context on every line of a run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from bot.core.redact import RedactingFilter, Redactor

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


def configure_logging(
    level: str,
    redactor: Redactor,
    *,
    file: Path | None = None,
    terminal_level: str | None = None,
) -> None:
    """Log at `level` to stderr, or at `terminal_level` there and at `level` to `file`."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(context)s%(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    handlers[0].setLevel(terminal_level or level)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
        handlers[1].setLevel(level)
    for handler in handlers:
        handler.addFilter(_ContextFilter())
        handler.addFilter(RedactingFilter(redactor))
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    # Their DEBUG lines carry request bodies and Bot API results: customers' words.
    for noisy in ("httpx", "httpcore", "aiosqlite", "apscheduler", "telegram.Bot", "telegram.ext"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
