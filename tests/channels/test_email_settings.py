"""Email settings: both servers or neither, a From address, ports that follow TLS, one clear
line for every mistake; and the service wires into an App like Telegram's."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app.wiring import App
from bot.core.errors import ConfigurationError
from bot.core.settings import load_settings
from channels.email.service import EMAIL_RETRY, EmailService

COMPLETE: dict[str, Any] = {
    "imap_host": "imap.example.com",
    "imap_user": "bot@example.com",
    "imap_password": "imap-secret",
    "smtp_host": "smtp.example.com",
    "email_from": "sales@example.com",
}


def test_without_mail_servers_there_is_no_email_channel() -> None:
    assert not load_settings().email_enabled


def test_complete_settings_enable_email_with_tls_ports() -> None:
    settings = load_settings(**COMPLETE)

    assert settings.email_enabled
    assert (settings.imap_port, settings.smtp_port) == (993, 465)
    assert "imap-secret" in settings.secrets()


@pytest.mark.parametrize(
    ("changes", "ports"),
    [
        ({"smtp_tls": "starttls"}, (993, 587)),
        ({"smtp_tls": "none", "imap_tls": "none"}, (143, 25)),
        ({"smtp_port": 2525, "imap_port": 1993}, (1993, 2525)),
    ],
)
def test_ports_follow_the_tls_mode_unless_given(
    changes: dict[str, Any], ports: tuple[int, int]
) -> None:
    settings = load_settings(**(COMPLETE | changes))

    assert (settings.imap_port, settings.smtp_port) == ports


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"smtp_host": None}, "SMTP_HOST"),
        ({"imap_host": None}, "IMAP_HOST"),
        ({"imap_password": None}, "IMAP_PASSWORD"),
        ({"email_from": None}, "EMAIL_FROM"),
        ({"email_from": "Sales <sales@example.com>"}, "EMAIL_FROM"),
        ({"email_from": "not an address"}, "EMAIL_FROM"),
        ({"smtp_user": "sales"}, "SMTP_PASSWORD"),
        ({"smtp_tls": "ssl"}, "SMTP_TLS"),
        ({"imap_tls": "starttls"}, "IMAP_TLS"),
        ({"imap_idle_seconds": 3600}, "IMAP_IDLE_SECONDS"),
        ({"email_autoreply_cap_per_hour": 0}, "EMAIL_AUTOREPLY_CAP_PER_HOUR"),
    ],
)
def test_a_mistake_is_one_line_naming_the_setting(changes: dict[str, Any], named: str) -> None:
    values = {k: v for k, v in (COMPLETE | changes).items() if v is not None}

    with pytest.raises(ConfigurationError) as caught:
        load_settings(**values)

    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_the_environment_configures_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in COMPLETE.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("IMAP_MAILBOX", "Sales")

    settings = load_settings()

    assert settings.email_enabled and settings.imap_mailbox == "Sales"


async def test_the_service_adds_the_email_channel_to_the_app(tmp_path: Any) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db", **COMPLETE)
    app = App(settings)
    try:
        service = EmailService(app, settings)

        assert app.outbox_workers["email"].channel is service.channel
        assert app.outbox_workers["email"].retry == EMAIL_RETRY
        assert service.intake.own_addresses == {"sales@example.com", "bot@example.com"}
        assert service.reader.lease_key == "email:bot@example.com@imap.example.com/INBOX:poller"
    finally:
        await app.db.dispose()
