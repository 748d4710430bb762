"""What every `crmbot` command shares: settings and logging, the event loop, the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from bot.core.errors import CrmbotError
from bot.core.logs import configure_logging
from bot.core.redact import Redactor
from bot.core.settings import Settings, load_settings
from bot.store.db import Database

T = TypeVar("T")


def _settings(log_level: str | None = None, *, console: bool = False) -> Settings:
    """Settings, with logging set up. `log_level` is the command's own default (quiet for
    one-shot commands); `console` keeps a terminal conversation readable: there only warnings
    reach the screen unless LOG_LEVEL is set, and LOG_FILE gets everything at LOG_LEVEL."""
    settings = load_settings()
    explicit = "log_level" in settings.model_fields_set
    level = settings.log_level if explicit or log_level is None else log_level
    terminal = None
    if console:
        level = settings.log_level
        terminal = settings.log_level if explicit else "WARNING"
    configure_logging(
        level, Redactor(settings.secrets()), file=settings.log_file, terminal_level=terminal
    )
    return settings


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, turning our errors into one line on stderr and exit code 2."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except CrmbotError as error:
        typer.echo(f"crmbot: error: {error}", err=True)
        raise typer.Exit(2) from None


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    try:
        await db.migrate()
        return await work(db)
    finally:
        await db.dispose()
