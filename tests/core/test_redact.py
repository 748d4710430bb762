"""Secrets, configured or merely secret-shaped, never reach the logs."""

from __future__ import annotations

import io
import logging

import pytest

from bot.core.redact import MASK, RedactingFilter, Redactor
from bot.core.settings import Settings

OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUv012345"
ANTHROPIC_KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"


def test_configured_secrets_are_masked_wherever_they_appear() -> None:
    redactor = Redactor(["hunter2-db-pass"])

    assert redactor.text("password=hunter2-db-pass;") == f"password={MASK};"


@pytest.mark.parametrize("secret", [OPENAI_KEY, ANTHROPIC_KEY, TELEGRAM_TOKEN])
def test_secret_shaped_strings_are_masked_without_being_configured(secret: str) -> None:
    assert Redactor().text(f"auth failed for {secret} (401)") == f"auth failed for {MASK} (401)"


def test_ordinary_text_is_left_alone() -> None:
    text = "Call me at 12:30 about ticket sk-12 and order 123456:abc"

    assert Redactor(["abc"]).text(text) == text  # secrets shorter than 4 are not masked


@pytest.mark.parametrize(
    "text",
    [
        TELEGRAM_TOKEN,
        f"{TELEGRAM_TOKEN} at the start",
        f"at the end {TELEGRAM_TOKEN}",
        f"after 10:30 and 9: and 12:ab, {TELEGRAM_TOKEN}",
        f"a:b {OPENAI_KEY}",
        f"prompt line one\nkey={ANTHROPIC_KEY}\n" * 3,
        "google AIza" + "x" * 35,
    ],
)
def test_the_quick_look_for_secret_shapes_misses_none(text: str) -> None:
    """A long prompt is only run through the shapes' pattern when a plain search finds what
    one needs; that search must never let a shape through."""
    redacted = Redactor().text(text)
    assert MASK in redacted
    for secret in (TELEGRAM_TOKEN, OPENAI_KEY, ANTHROPIC_KEY, "AIza" + "x" * 35):
        assert secret not in redacted


def test_json_like_values_are_redacted_recursively() -> None:
    redactor = Redactor(["hunter2-db-pass"])

    value = {"a": ["x hunter2-db-pass", ("t", OPENAI_KEY)], "n": 3, "b": {"c": TELEGRAM_TOKEN}}

    assert redactor.value(value) == {
        "a": [f"x {MASK}", ["t", MASK]],
        "n": 3,
        "b": {"c": MASK},
    }


def _render(record: logging.LogRecord, redactor: Redactor) -> str:
    assert RedactingFilter(redactor).filter(record)
    return logging.Formatter("%(levelname)s %(message)s").format(record)


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("crmbot.test", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_the_logging_filter_redacts_the_formatted_message_and_its_arguments() -> None:
    record = _record("calling %s with key %s", "openai", "hunter2-db-pass")

    rendered = _render(record, Redactor(["hunter2-db-pass"]))

    assert rendered == f"ERROR calling openai with key {MASK}"


def test_the_logging_filter_redacts_exception_text() -> None:
    try:
        raise PermissionError(f"invalid x-api-key {ANTHROPIC_KEY} for hunter2-db-pass")
    except PermissionError as error:
        record = _record("provider call failed", exc=error)

    rendered = _render(record, Redactor(["hunter2-db-pass"]))

    assert "provider call failed" in rendered and "PermissionError" in rendered
    assert "Traceback" in rendered
    assert ANTHROPIC_KEY not in rendered and "hunter2-db-pass" not in rendered


def test_a_malformed_logging_call_is_logged_redacted_instead_of_raising() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor(["hunter2-db-pass"])))
    logger = logging.getLogger("crmbot.test.malformed")
    logger.addHandler(handler)
    try:
        logger.error("two placeholders %s %s, one argument", "hunter2-db-pass")
    finally:
        logger.removeHandler(handler)

    logged = stream.getvalue()
    assert "two placeholders %s %s, one argument" in logged
    assert "unformattable log arguments" in logged
    assert "hunter2-db-pass" not in logged and MASK in logged


def test_a_url_encoded_database_password_is_masked_as_written_and_as_decoded() -> None:
    settings = Settings(database_url="postgresql+asyncpg://crm:p%40ss%2Fw0rd!@db.internal:5432/crm")
    redactor = Redactor(settings.secrets())
    leaked = (
        "connect failed for postgresql+asyncpg://crm:p%40ss%2Fw0rd!@db.internal/crm "
        "(password 'p@ss/w0rd!' rejected)"
    )
    masked = redactor.text(leaked)
    assert "p%40ss" not in masked and "p@ss/w0rd!" not in masked
    assert masked.count(MASK) == 2
