"""Routing: admin assignment, then the sticky choice, then rules, then the default."""

from __future__ import annotations

from sqlalchemy import update

from agents import catalog
from bot.store.models import Contact, Conversation
from tests.support.harness import Harness
from tests.support.models import FunctionModel, turn


async def _agent_used(h: Harness, text: str, contact: str = "Ann") -> str | None:
    h.use_model(FunctionModel(lambda request: turn("ok")))
    outcome = await h.answer(text, contact)
    return outcome.agent


async def test_default_agent_when_no_rule_matches(harness: Harness) -> None:
    assert await _agent_used(harness, "hi") == "tester"


async def test_rules_pick_the_highest_priority_match(harness: Harness) -> None:
    await harness.add_agent(name="support", match={"tags": ["customer"]}, priority=10)
    await harness.add_agent(name="console-only", match={"channels": ["console"]}, priority=5)
    await harness.receive("first", "Cat")
    async with harness.db.transaction() as session:
        await session.execute(update(Contact).values(tags=["customer"]))
        await session.execute(update(Conversation).values(current_agent=None))
    assert await _agent_used(harness, "help", "Cat") == "support"


async def test_choice_is_sticky_for_the_conversation(harness: Harness) -> None:
    assert await _agent_used(harness, "hi") == "tester"
    await harness.add_agent(name="eager", match={"channels": ["console"]}, priority=100)
    assert await _agent_used(harness, "again") == "tester"


async def test_admin_assignment_wins_over_sticky_choice(harness: Harness) -> None:
    await harness.add_agent(name="closer", match={"channels": ["email"]})
    assert await _agent_used(harness, "hi") == "tester"
    async with harness.db.transaction() as session:
        await session.execute(update(Contact).values(assigned_agent="closer"))
    assert await _agent_used(harness, "again") == "closer"


async def test_disabled_agent_is_skipped(harness: Harness) -> None:
    await harness.add_agent(name="special", match={"channels": ["console"]}, priority=9)
    async with harness.db.transaction() as session:
        await catalog.set_enabled(session, "special", False)
    assert await _agent_used(harness, "hi") == "tester"


async def test_agents_without_inbound_trigger_never_take_conversations(harness: Harness) -> None:
    await harness.add_agent(
        name="nightly",
        priority=50,
        triggers=[{"type": "schedule", "cron": "0 2 * * *"}],
    )
    assert await _agent_used(harness, "hi") == "tester"


async def test_no_enabled_agent_hands_off(harness: Harness) -> None:
    async with harness.db.transaction() as session:
        await catalog.set_enabled(session, "tester", False)
    outcome = await harness.answer("hi")
    assert (outcome.status, outcome.reason) == ("handed_off", "no agent available")
