"""Settings from the environment and `.env`, validated once at start-up.

Every field here is listed and explained in `.env.example` and the README's configuration
table. `load_settings()` turns a validation failure into one `ConfigurationError` line that
names the setting, so a bad value never surfaces as a traceback.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal, cast
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.errors import ConfigurationError
from bot.core.hours import BusinessHours, QuietHours
from bot.core.providers import PROVIDERS, ProviderName

DEFAULT_POOL_SIZE = 20
"""PostgreSQL connections one process opens at most, unless `DATABASE_POOL_SIZE` says."""

_REMINDER_SPAN = re.compile(r"^\s*(\d{1,4})\s*([mhd])\s*$")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """crmbot's configuration; names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    database_url: str = Field(
        "sqlite+aiosqlite:///data/crmbot.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    llm_provider: ProviderName | None = Field(
        None,
        description="openai | anthropic | gemini | offline; default: the keyed one, else offline",
    )
    llm_model: str | None = Field(None, description="Model name; default depends on the provider")
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    llm_timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one provider request")
    llm_max_retries: int = Field(3, ge=0, le=10, description="Retries on 429/5xx/timeouts")
    llm_fallback_provider: ProviderName | None = Field(
        None,
        description="openai | anthropic | gemini | offline: takes over while the primary keeps "
        "failing (its circuit breaker is open)",
    )
    llm_fallback_model: str | None = Field(
        None, description="The fallback's model; default depends on the fallback provider"
    )
    llm_breaker_failures: int = Field(
        5, ge=1, le=1000, description="Failed calls in a row (after retries) that open a breaker"
    )
    llm_breaker_cooldown_seconds: float = Field(
        60.0, gt=0, le=3600, description="How long an open breaker waits before one probe call"
    )
    llm_price_input_per_mtok: Decimal | None = Field(
        None, ge=0, description="Override: USD per million input tokens"
    )
    llm_price_output_per_mtok: Decimal | None = Field(
        None, ge=0, description="Override: USD per million output tokens"
    )
    kb_embeddings: Literal["none", "openai", "gemini"] = Field(
        "none",
        description="Semantic knowledge-base search with this provider's embeddings, fused "
        "with keyword search; needs the embeddings extra. none: keyword search only",
    )
    kb_embedding_model: str | None = Field(
        None,
        description="Embedding model; default text-embedding-3-small (openai), "
        "text-embedding-004 (gemini)",
    )
    default_agent: str = Field("lead-qualifying", description="Agent used when no rule matches")
    run_timeout_seconds: float = Field(120.0, gt=0, description="Wall-clock cap of one agent run")
    database_pool_size: int = Field(
        DEFAULT_POOL_SIZE,
        ge=1,
        le=1000,
        description="PostgreSQL connections this process opens at most; every worker's "
        "together must stay under the server's max_connections",
    )
    max_concurrent_runs: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Agent runs in progress at once in this process; they mostly wait on the model",
    )
    worker_id: str = Field(default_factory=_default_worker_id)
    lease_seconds: float = Field(
        15.0,
        ge=3,
        le=600,
        description="A dead worker's conversations and jobs are taken over within this time",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = Field(
        None, description="Also log to this file; the console chat then logs only here"
    )

    telegram_bot_token: SecretStr | None = Field(None, description="Starts the Telegram channel")
    telegram_base_url: str | None = Field(
        None, description="Bot API server, e.g. a self-hosted one: http://host:8081/bot"
    )
    telegram_webhook_url: str | None = Field(
        None, description="Public HTTPS URL Telegram posts updates to; unset: long polling"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends with every webhook request"
    )
    telegram_webhook_listen: str = Field("0.0.0.0", description="Address the webhook server binds")
    telegram_webhook_port: int = Field(8443, ge=1, le=65535)
    telegram_staff_chat_id: int | None = Field(None, description="The staff supergroup's chat id")
    telegram_admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Comma-separated Telegram user ids of admins"
    )
    telegram_max_messages_per_second: float = Field(
        30.0,
        gt=0,
        le=1000,
        description="Overall send rate; above 30, messages are paid broadcasts (Telegram Stars)",
    )
    coalesce_seconds: float = Field(
        2.0, ge=0, le=60, description="Quiet time before a burst of messages is answered at once"
    )
    business_hours: str = Field(
        "mon-fri 09:00-18:00", description="When people answer handoffs, e.g. 'mon-sat 08:00-20:00'"
    )
    business_timezone: str = Field("UTC", description="IANA time zone of business_hours")

    scheduler_misfire_grace_seconds: float = Field(
        21_600.0,
        ge=0,
        description="A slot missed while the bot was down still fires (once) within this time",
    )
    scheduler_tick_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often due jobs and wake-ups are looked for"
    )
    proactive_max_per_week: int = Field(
        3, ge=0, le=1000, description="Automatic messages one contact may get in 7 days"
    )
    quiet_hours: str = Field(
        "21:00-08:00", description="No automatic message in this local time span; 'none' for none"
    )
    proactive_daily_limit: int | None = Field(
        None,
        ge=1,
        description="Automatic sends in 24 h that trip the breaker; unset: a multiple of usual",
    )
    proactive_breaker_multiple: float = Field(
        3.0, gt=1, description="Unset limit: this times the average day of the last 7"
    )
    proactive_breaker_floor: int = Field(
        200, ge=1, description="Unset limit: never below this many sends in 24 h"
    )
    events_listen: str = Field("127.0.0.1", description="Address the events/contacts API binds")
    events_port: int | None = Field(
        None, ge=1, le=65535, description="Serve POST /events and /contacts on this port"
    )
    events_secret: SecretStr | None = Field(
        None, description="Bearer token the events/contacts API requires"
    )
    public_url: str | None = Field(
        None,
        description="Base URL people reach the HTTP API at (calendar feeds); "
        "unset: http://EVENTS_LISTEN:EVENTS_PORT",
    )
    meeting_reminder_before: str = Field(
        "24h", description="Remind the contact this long before a meeting (30m, 2h, 1d); 'none'"
    )

    imap_host: str | None = Field(None, description="With SMTP_HOST: starts the email channel")
    imap_port: int | None = Field(None, ge=1, le=65535, description="993, or 143 with TLS none")
    imap_user: str | None = Field(None, description="Login of the mailbox the bot reads")
    imap_password: SecretStr | None = None
    imap_tls: Literal["implicit", "none"] = Field(
        "implicit", description="implicit TLS, or none on a trusted network only"
    )
    imap_mailbox: str = Field("INBOX", min_length=1, description="Folder the bot reads")
    imap_idle_seconds: float = Field(
        1740.0, gt=0, le=1740, description="IDLE is renewed this often (servers drop it at 30 min)"
    )
    imap_poll_seconds: float = Field(
        60.0, gt=0, description="Polling interval for servers without IDLE"
    )
    smtp_host: str | None = Field(None, description="With IMAP_HOST: starts the email channel")
    smtp_port: int | None = Field(None, ge=1, le=65535, description="465, 587 or 25 by SMTP_TLS")
    smtp_user: str | None = Field(None, description="SMTP login; unset: no authentication")
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["implicit", "starttls", "none"] = Field(
        "implicit", description="implicit TLS, STARTTLS, or none on a trusted network only"
    )
    email_from: str | None = Field(None, description="Address replies are sent from")
    email_from_name: str = Field("", description="Display name of EMAIL_FROM")
    email_autoreply_cap_per_hour: int = Field(
        5, ge=1, le=1000, description="Automatic replies one contact may get per hour"
    )

    research_user_agent: str = Field(
        "crmbot-research/0.1",
        min_length=1,
        max_length=200,
        description="User-Agent of `crmbot research`, also the name robots.txt rules match",
    )
    research_max_bytes: int = Field(
        1_000_000, ge=1024, le=50_000_000, description="Bytes read of one page or feed"
    )
    research_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Wall-clock cap of one fetch, redirects included"
    )
    research_max_redirects: int = Field(5, ge=0, le=20, description="Redirects one fetch follows")
    research_concurrency: int = Field(
        4, ge=1, le=64, description="Prospects researched at once by `crmbot research`"
    )
    research_allow_private: bool = Field(
        False, description="Also fetch hosts on loopback and private networks (intranet, tests)"
    )

    @field_validator("telegram_admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("meeting_reminder_before")
    @classmethod
    def _reminder_span(cls, value: str) -> str:
        if value.strip().lower() != "none" and _REMINDER_SPAN.match(value) is None:
            raise ValueError(f"{value!r} is not like 30m, 2h or 1d, or none")
        return value.strip().lower()

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # 'America' is a directory
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _pick_provider(self) -> Settings:
        if self.llm_provider is None:
            keyed = [n for n, p in PROVIDERS.items() if p.key_setting and self.api_key(n)]
            self.llm_provider = keyed[0] if keyed else "offline"
        chosen = self.llm_provider
        if chosen is not None and chosen != "offline" and not self.api_key(chosen):
            raise ValueError(
                f"{PROVIDERS[chosen].key_setting} is required when LLM_PROVIDER={chosen}"
            )
        self._check_fallback()
        try:
            BusinessHours(self.business_hours, self.business_timezone)
        except ConfigurationError as error:
            raise ValueError(str(error)) from None
        if self.telegram_webhook_url and not self.telegram_webhook_secret:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_WEBHOOK_URL is set")
        if self.events_port is not None and not self.events_secret:
            raise ValueError("EVENTS_SECRET is required when EVENTS_PORT is set")
        try:
            QuietHours.parse(self.quiet_hours)
        except ConfigurationError as error:
            raise ValueError(str(error)) from None
        if self.telegram_bot_token and self.telegram_staff_chat_id is None:
            raise ValueError("TELEGRAM_STAFF_CHAT_ID is required when TELEGRAM_BOT_TOKEN is set")
        self._check_email()
        if not self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return self

    def _check_fallback(self) -> None:
        fallback = self.llm_fallback_provider
        if fallback is None:
            if self.llm_fallback_model:
                raise ValueError("LLM_FALLBACK_MODEL needs LLM_FALLBACK_PROVIDER")
            return
        if fallback != "offline" and not self.api_key(fallback):
            raise ValueError(
                f"{PROVIDERS[fallback].key_setting} is required when "
                f"LLM_FALLBACK_PROVIDER={fallback}"
            )

    def _check_email(self) -> None:
        """Email needs both servers, their logins, and a From address; ports follow TLS."""
        if self.imap_host and not self.smtp_host:
            raise ValueError("SMTP_HOST is required when IMAP_HOST is set")
        if self.smtp_host and not self.imap_host:
            raise ValueError("IMAP_HOST is required when SMTP_HOST is set")
        if self.imap_host and not (self.imap_user and self.imap_password):
            raise ValueError("IMAP_USER and IMAP_PASSWORD are required when IMAP_HOST is set")
        if self.smtp_user and not self.smtp_password:
            raise ValueError("SMTP_PASSWORD is required when SMTP_USER is set")
        if self.smtp_host and not self.email_from:
            raise ValueError("EMAIL_FROM is required when SMTP_HOST is set")
        if self.email_from is not None:
            address = parseaddr(self.email_from)[1]
            if address != self.email_from.strip() or address.count("@") != 1:
                raise ValueError(
                    f"EMAIL_FROM must be an address like bot@example.com, not {self.email_from!r}"
                )
            self.email_from = address
        if self.imap_port is None:
            self.imap_port = 993 if self.imap_tls == "implicit" else 143
        if self.smtp_port is None:
            self.smtp_port = {"implicit": 465, "starttls": 587, "none": 25}[self.smtp_tls]

    @property
    def meeting_reminder(self) -> timedelta | None:
        """How long before a meeting its reminder goes; None: no reminders."""
        found = _REMINDER_SPAN.match(self.meeting_reminder_before)
        if found is None:
            return None
        unit = {"m": "minutes", "h": "hours", "d": "days"}[found.group(2)]
        return timedelta(**{unit: int(found.group(1))})

    @property
    def public_base_url(self) -> str:
        """Where people reach the HTTP API: PUBLIC_URL, else the address it listens on."""
        if self.public_url:
            return self.public_url
        port = f":{self.events_port}" if self.events_port else ""
        return f"http://{self.events_listen}{port}"

    @property
    def email_enabled(self) -> bool:
        """Both mail servers are configured: `crmbot run` starts the email channel."""
        return bool(self.imap_host and self.smtp_host)

    def api_key(self, provider: str) -> str | None:
        """The API key configured for `provider`, or None."""
        secret: SecretStr | None = getattr(self, f"{provider}_api_key", None)
        return secret.get_secret_value() if secret else None

    def base_url(self, provider: str) -> str | None:
        """The base URL override for `provider`, or None for the SDK's default."""
        url: str | None = getattr(self, f"{provider}_base_url", None)
        return url

    def model_for(self, provider: str) -> str:
        """The model to use for `provider` when the agent does not name one."""
        if self.llm_model and provider == self.llm_provider:
            return self.llm_model
        return PROVIDERS[cast(ProviderName, provider)].default_model

    @property
    def fallback_model(self) -> str | None:
        """The model LLM_FALLBACK_PROVIDER is called with; None without a fallback."""
        if self.llm_fallback_provider is None:
            return None
        return self.llm_fallback_model or PROVIDERS[self.llm_fallback_provider].default_model

    def secrets(self) -> list[str]:
        """Every secret value configured, for log and audit redaction."""
        found = []
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
            elif name == "database_url" and "@" in str(value):
                password = str(value).split("://", 1)[-1].rsplit("@", 1)[0].partition(":")[2]
                if password:
                    # As written in the URL and as the driver sees it: "p%40ss" is "p@ss".
                    found += dict.fromkeys([password, unquote(password)])
        return found


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise `ConfigurationError` with one line naming the bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]).upper()
        message = str(first["msg"]).removeprefix("Value error, ")
        where = f"{loc}: " if loc else ""
        raise ConfigurationError(f"invalid setting {where}{message}") from None
