"""The fallback provider behind each network provider's circuit breaker, run by the engine.

The primary is the real OpenAI adapter against a stub that fails as told; every switch must
leave an audit record, and staff hear once per opening.
"""

from __future__ import annotations

import pytest

from bot.core.errors import ConfigurationError
from bot.core.settings import load_settings
from bot.store.models import OutboxItem
from tests.providers.app_rig import (
    QUESTION,
    RETRIES,
    assert_nothing_lost,
    audit,
    handoff_reason,
    stub,
    stubbed_app,
)
from tests.providers.stub_server import Reply
from tests.providers.test_breaker import Clock
from tests.providers.wire import API_KEY, AnthropicWire, OpenAIWire
from tests.support.harness import Harness

OPENAI = OpenAIWire()
DOWN = Reply(503, OPENAI.error(503, "Overloaded"))
COOLDOWN = 60.0


async def alerts(h: Harness) -> list[str]:
    """Alerts about a provider that reached the staff group."""
    items = await h.rows(OutboxItem, OutboxItem.channel == "staff", OutboxItem.status == "sent")
    texts = [item.text for item in items if item.meta.get("kind") == "provider_alert"]
    assert all(text in (sent for _, sent in h.staff.delivered) for text in texts)
    return texts


async def test_breaker_opens_after_n_failures_and_runs_go_to_the_fallback(
    database_url: str,
) -> None:
    # Offline as the fallback: no key anywhere in these settings.
    async with (
        stub(OPENAI) as server,
        stubbed_app(
            database_url, server, llm_fallback_provider="offline", llm_breaker_failures=2
        ) as h,
    ):
        server.fallback = DOWN

        outcomes = [await h.answer("hello", contact=name) for name in ("Ann", "Bob", "Cid")]

        # Every customer was answered, by the fallback; the third run never asked OpenAI.
        assert [o.status for o in outcomes] == ["finished"] * 3
        assert [QUESTION in text for _, text in h.channel.delivered] == [True] * 3
        assert len(server.received) == 2 * (RETRIES + 1)
        [opened] = await audit(h, "provider_circuit_opened")
        assert opened["provider"] == "openai"
        assert opened["failures_in_a_row"] == 2
        assert opened["fallback"] == "offline"
        assert "HTTP 503" in opened["error"]
        assert opened["seen_in_run"] == outcomes[1].run_id
        reasons = []
        for outcome in outcomes:
            [switch] = await audit(h, "provider_switched", outcome.run_id)
            assert (switch["from"], switch["to"], switch["model"]) == (
                "openai",
                "offline",
                "offline-policy",
            )
            reasons.append(switch["reason"])
            calls = await audit(h, "model_call", outcome.run_id)
            assert {call["provider"] for call in calls} == {"offline"}
        assert "HTTP 503" in reasons[0] and "HTTP 503" in reasons[1]
        assert reasons[2] == "the openai circuit is open"
        [alert] = await alerts(h)
        assert "failed 2 calls in a row" in alert and "fallback offline" in alert


async def test_probe_after_the_cooldown_closes_the_breaker(database_url: str) -> None:
    async with (
        stub(OPENAI) as server,
        stubbed_app(
            database_url,
            server,
            llm_fallback_provider="offline",
            llm_breaker_failures=2,
            llm_breaker_cooldown_seconds=COOLDOWN,
        ) as h,
    ):
        clock = Clock()
        h.app.providers.breaker("openai").clock = clock
        server.fallback = DOWN
        for name in ("Ann", "Bob"):
            await h.answer("hello", contact=name)
        clock.now += COOLDOWN - 1
        await h.answer("hello", contact="Cid")  # still cooling down: the fallback answers
        assert await audit(h, "provider_circuit_probe") == []
        sent = len(server.received)

        clock.now += 1
        server.fallback = None
        server.queue(
            Reply(body=OPENAI.text("Hello from OpenAI.")),
            Reply(body=OPENAI.text("OpenAI again.")),
        )
        probed = await h.answer("hello", contact="Dan")
        after = await h.answer("hello", contact="Eve")

        assert (probed.status, after.status) == ("finished", "finished")
        assert [text for _, text in h.channel.delivered[-2:]] == [
            "Hello from OpenAI.",
            "OpenAI again.",
        ]
        assert len(server.received) == sent + 2
        [probe] = await audit(h, "provider_circuit_probe")
        [closed] = await audit(h, "provider_circuit_closed")
        assert probe["seen_in_run"] == closed["seen_in_run"] == probed.run_id
        assert closed["open_seconds"] == COOLDOWN
        assert await audit(h, "provider_switched", probed.run_id) == []
        assert h.app.providers.breaker("openai").state == "closed"
        server.assert_complete()


async def test_failed_probe_reopens_without_a_second_alert(database_url: str) -> None:
    async with (
        stub(OPENAI) as server,
        stubbed_app(
            database_url, server, llm_fallback_provider="offline", llm_breaker_failures=1
        ) as h,
    ):
        clock = Clock()
        h.app.providers.breaker("openai").clock = clock
        server.fallback = DOWN
        await h.answer("hello", contact="Ann")
        clock.now += COOLDOWN

        probed = await h.answer("hello", contact="Bob")
        sent = len(server.received)
        later = await h.answer("hello", contact="Cid")

        assert (probed.status, later.status) == ("finished", "finished")
        assert len(server.received) == sent  # reopened: no call until the next cool-down
        [reopened] = await audit(h, "provider_circuit_reopened")
        assert reopened["seen_in_run"] == probed.run_id and "HTTP 503" in reopened["error"]
        [switch] = await audit(h, "provider_switched", probed.run_id)
        assert "HTTP 503" in switch["reason"]
        assert len(await alerts(h)) == 1


async def test_a_network_fallback_is_asked_for_its_own_model(database_url: str) -> None:
    anthropic = AnthropicWire()
    async with (
        stub(OPENAI) as server,
        stub(anthropic) as backup,
        stubbed_app(
            database_url,
            server,
            anthropic_api_key=API_KEY,
            llm_fallback_provider="anthropic",
            llm_fallback_model="claude-fallback",
        ) as h,
    ):
        h.app.providers.register("anthropic", anthropic.build(backup.base_url, max_retries=0))
        server.fallback = DOWN
        backup.queue(Reply(body=anthropic.text("Claude here, happy to help.")))

        outcome = await h.answer("hello")

        assert outcome.status == "finished"
        assert h.channel.delivered[-1][1] == "Claude here, happy to help."
        [request] = backup.received
        assert request.body["model"] == "claude-fallback"
        [switch] = await audit(h, "provider_switched", outcome.run_id)
        assert (switch["to"], switch["model"]) == ("anthropic", "claude-fallback")


async def test_fallback_failing_too_hands_off_with_both_reasons(database_url: str) -> None:
    anthropic = AnthropicWire()
    async with (
        stub(OPENAI) as server,
        stub(anthropic) as backup,
        stubbed_app(
            database_url, server, anthropic_api_key=API_KEY, llm_fallback_provider="anthropic"
        ) as h,
    ):
        h.app.providers.register("anthropic", anthropic.build(backup.base_url, max_retries=0))
        server.fallback = DOWN
        backup.fallback = Reply(529, anthropic.error(529, "Overloaded"))

        outcome = await h.answer("hello")

        assert outcome.status == "handed_off"
        reason = await handoff_reason(h, 1)
        assert "openai returned HTTP 503" in reason
        assert "the fallback anthropic failed too" in reason and "529" in reason
        await assert_nothing_lost(h, 1)


async def test_without_a_fallback_an_open_breaker_hands_off_at_once(database_url: str) -> None:
    async with (
        stub(OPENAI) as server,
        stubbed_app(database_url, server, llm_breaker_failures=2) as h,
    ):
        server.fallback = DOWN

        outcomes = [await h.answer("hello", contact=name) for name in ("Ann", "Bob", "Cid")]

        assert [o.status for o in outcomes] == ["handed_off"] * 3
        assert len(server.received) == 2 * (RETRIES + 1)  # Cid's run asked nobody
        assert "HTTP 503" in await handoff_reason(h, 1)
        assert "circuit is open" in await handoff_reason(h, 3)
        assert "no LLM_FALLBACK_PROVIDER" in await handoff_reason(h, 3)
        for conversation_id in (1, 2, 3):
            await assert_nothing_lost(h, conversation_id)
        [alert] = await alerts(h)
        assert "No LLM_FALLBACK_PROVIDER is set" in alert


async def test_requests_the_provider_rejects_do_not_count(database_url: str) -> None:
    async with (
        stub(OPENAI) as server,
        stubbed_app(
            database_url, server, llm_fallback_provider="offline", llm_breaker_failures=2
        ) as h,
    ):
        server.fallback = Reply(400, OPENAI.error(400, "context_length_exceeded"))

        outcomes = [await h.answer("hello", contact=name) for name in ("Ann", "Bob", "Cid")]

        # Each run is refused for what it asked, says so, and the provider stays in use.
        assert [o.status for o in outcomes] == ["handed_off"] * 3
        assert "HTTP 400" in await handoff_reason(h, 3)
        assert len(server.received) == 3
        assert h.app.providers.breaker("openai").state == "closed"
        assert await audit(h, "provider_switched") == []


async def test_a_model_misbehaving_in_valid_answers_does_not_count(database_url: str) -> None:
    async with (
        stub(OPENAI) as server,
        stubbed_app(
            database_url, server, llm_fallback_provider="offline", llm_breaker_failures=1
        ) as h,
    ):
        server.fallback = Reply(body=OPENAI.text(""))  # says nothing, every time

        outcome = await h.answer("hello")

        assert outcome.status == "handed_off"
        assert "empty answers" in await handoff_reason(h, 1)
        assert h.app.providers.breaker("openai").failures == 0
        assert await audit(h, "provider_switched") == []


def test_offline_fallback_needs_no_key() -> None:
    settings = load_settings(
        llm_provider="openai", openai_api_key=API_KEY, llm_fallback_provider="offline"
    )

    assert settings.fallback_model == "offline-policy"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"llm_fallback_provider": "anthropic"}, "ANTHROPIC_API_KEY"),
        ({"llm_fallback_model": "gpt-4o"}, "LLM_FALLBACK_PROVIDER"),
        ({"llm_breaker_failures": 0}, "LLM_BREAKER_FAILURES"),
        ({"llm_breaker_cooldown_seconds": 0}, "LLM_BREAKER_COOLDOWN_SECONDS"),
    ],
)
def test_fallback_settings_are_checked_at_start(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_settings(llm_provider="openai", openai_api_key=API_KEY, **settings)
