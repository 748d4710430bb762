"""Settings pick a sensible provider, and a bad value is one clear line naming the setting."""

from __future__ import annotations

import pytest

from bot.core.errors import ConfigurationError
from bot.core.settings import load_settings


def test_with_no_keys_the_offline_provider_is_the_default() -> None:
    settings = load_settings()

    assert settings.llm_provider == "offline"
    assert settings.model_for("offline") == "offline-policy"
    assert settings.database_url.startswith("sqlite+aiosqlite://")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_a_key_alone_picks_its_provider(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "stub-key")

    settings = load_settings()

    assert settings.llm_provider == provider
    assert settings.api_key(provider) == "stub-key"


def test_an_explicit_provider_wins_over_the_keys_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "stub-openai")
    monkeypatch.setenv("LLM_PROVIDER", "offline")

    assert load_settings().llm_provider == "offline"


def test_a_provider_without_its_key_is_refused_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "anthropic")
    monkeypatch.setenv("OPENAI_API_KEY", "stub-openai")  # another provider's key does not count

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "ANTHROPIC_API_KEY" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_malformed_number_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "abc")

    with pytest.raises(ConfigurationError, match="LLM_TIMEOUT_SECONDS"):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@localhost/crm",  # a sync driver would block the event loop
        "sqlite:///data/crmbot.db",
        "mysql+aiomysql://user:pw@localhost/crm",
    ],
)
def test_a_database_url_with_an_unsupported_scheme_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        load_settings(database_url=url)


def test_settings_are_read_from_a_dotenv_file_in_the_working_directory() -> None:
    with open(".env", "w", encoding="utf-8") as env:
        env.write("GEMINI_API_KEY=from-dotenv\nLLM_MODEL=gemini-test\n")

    settings = load_settings()

    assert (settings.llm_provider, settings.model_for("gemini")) == ("gemini", "gemini-test")


def test_secrets_include_every_api_key_and_the_database_password() -> None:
    settings = load_settings(
        openai_api_key="sk-openai-stub-0001",
        anthropic_api_key="sk-ant-stub-0002",
        gemini_api_key="gemini-stub-0003",
        llm_provider="openai",
        database_url="postgresql+asyncpg://crm:s3cret-pass@db.internal:5432/crm",
    )

    assert sorted(settings.secrets()) == sorted(
        ["sk-openai-stub-0001", "sk-ant-stub-0002", "gemini-stub-0003", "s3cret-pass"]
    )


def test_secrets_are_empty_without_keys_or_a_password() -> None:
    settings = load_settings(database_url="postgresql+asyncpg://crm@localhost/crm")

    assert settings.secrets() == []
