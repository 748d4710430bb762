"""Keep secrets out of logs and the audit trail.

Configured secret values are replaced wherever they appear, and so is anything shaped like a
provider API key or a Telegram bot token, in case a secret arrives by another route (an error
message from an SDK that echoes a header, say).
"""

from __future__ import annotations

import logging
import re
from typing import Any

_SECRET_SHAPES = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,})"  # OpenAI / Anthropic keys
    r"|(AIza[0-9A-Za-z_\-]{30,})"  # Google API keys
    r"|(\b\d{6,12}:[A-Za-z0-9_\-]{30,}\b)"  # Telegram bot tokens
)
MASK = "[redacted]"
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-]{30}")


def _may_hold_a_shape(text: str) -> bool:
    """Whether `text` has what each secret shape needs, found with plain string searches:
    the full pattern, run at every position of a long prompt, cost more than the rest of an
    audit record put together (bench.telegram profile)."""
    if "sk-" in text or "AIza" in text:
        return True
    colon = text.find(":")
    while colon != -1:  # a Telegram token: digits, a colon, then 30 token characters or more
        if colon > 0 and text[colon - 1].isdigit() and _TOKEN_TAIL.match(text, colon + 1):
            return True
        colon = text.find(":", colon + 1)
    return False


class Redactor:
    """Replaces known secrets and secret-shaped strings in text and JSON-like values."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets = sorted({s for s in secrets or [] if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        return _SECRET_SHAPES.sub(MASK, value) if _may_hold_a_shape(value) else value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that renders the message once and redacts it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed logging call must not raise where it was logged
            message = f"{record.msg} (unformattable log arguments: {record.args!r})"
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.text(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True
