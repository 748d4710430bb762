"""Admin commands: each does what it says, is audited, and a malformed one gets its usage."""

from __future__ import annotations

import pytest

from agents import catalog
from bot.app.admin import AGENT_USAGE, Admin, AdminCommands
from bot.store.models import AgentRun, AuditEvent, Contact, OutboxItem
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, call, turn

ADMIN = Admin("telegram:1")


async def test_list_and_show(admins: AdminCommands) -> None:
    assert "tester" in await admins.agent(ADMIN, "list")
    shown = await admins.agent(ADMIN, "show tester")
    assert "enabled" in shown
    assert "goal:" in shown


async def test_create_makes_a_disabled_agent_then_set_and_enable(
    admins: AdminCommands, harness: Harness
) -> None:
    assert "disabled" in await admins.agent(ADMIN, "create closer")
    await admins.agent(ADMIN, 'set closer goal "Close qualified deals by booking a demo call."')
    await admins.agent(ADMIN, "set closer rules Be brief | Never discuss price")
    await admins.agent(ADMIN, "set closer triggers refund, lawyer")
    await admins.agent(ADMIN, "set closer tools send_message, handoff_to_human")
    await admins.agent(ADMIN, "set closer max_steps 4")
    await admins.agent(ADMIN, "set closer budget tokens=5000 cost=0.01")
    await admins.agent(ADMIN, "enable closer")
    async with harness.db.transaction() as session:
        stored = await catalog.get(session, "closer")
    d = stored.definition
    assert stored.enabled
    assert d.goal == "Close qualified deals by booking a demo call."
    assert d.rules == ["Be brief", "Never discuss price"]
    assert d.handoff_triggers == ["refund", "lawyer"]
    assert d.tools == ["send_message", "handoff_to_human"]
    assert (d.max_steps, d.budget.max_tokens_per_run, str(d.budget.max_cost_per_run)) == (
        4,
        5000,
        "0.01",
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("", "Usage:"),
        ("frobnicate", "Usage:"),
        ("show", "Usage: /agent show NAME"),
        ("set tester", "Usage: /agent set NAME FIELD VALUE"),
        ("set tester colour red", "Usage: /agent set NAME FIELD VALUE"),
        ("set tester max_steps lots", "max_steps must be a whole number"),
        ("set tester max_steps 999", "Not done"),
        ("set tester tools send_message, rm_rf", "Not done"),
        ("set tester budget pizza=1", "budget takes"),
        ("show nobody", "Not done: no agent named 'nobody'"),
        ("assign tester", "Usage: /agent assign"),
        ("test tester", "Usage: /agent test"),
    ],
)
async def test_malformed_commands_get_their_usage(
    admins: AdminCommands, command: str, expected: str
) -> None:
    assert expected in await admins.agent(ADMIN, command)


async def test_usage_lists_every_command(admins: AdminCommands) -> None:
    reply = await admins.agent(ADMIN, "help")
    assert reply == AGENT_USAGE
    for verb in ("list", "show", "create", "set", "enable", "assign", "test", "runs"):
        assert f"/agent {verb}" in reply


async def test_assign_to_contact_and_to_tag(admins: AdminCommands, harness: Harness) -> None:
    await harness.receive("hello", contact="Ann")
    assert "now goes to tester" in await admins.agent(ADMIN, "assign tester Ann")
    assert "tagged vip" in await admins.agent(ADMIN, "assign tester tag:vip")
    [ann] = await harness.rows(Contact)
    assert ann.assigned_agent == "tester"
    async with harness.db.transaction() as session:
        assert (await catalog.get(session, "tester")).definition.assigned_tags == ["vip"]
    assert "no contact" in await admins.agent(ADMIN, "assign tester Nobody")


async def test_dry_run_shows_the_plan_and_sends_nothing(
    admins: AdminCommands, harness: Harness
) -> None:
    harness.use_model(
        ScriptedModel(
            turn("", call("get_contact")),
            turn("", call("send_message", {"text": "Hi there!"})),
            turn("", call("finish")),
        )
    )
    reply = await admins.agent(ADMIN, "test tester hello, is this the CRM bot?")
    assert "nothing was sent" in reply
    assert "send_message" in reply
    assert "Hi there!" in reply
    assert await harness.rows(OutboxItem) == []
    [run] = await harness.rows(AgentRun)
    assert run.trigger == "test"
    assert "test" in await admins.agent(ADMIN, "runs tester")


async def test_every_command_is_audited(admins: AdminCommands, harness: Harness) -> None:
    await admins.agent(ADMIN, "list")
    await admins.agent(ADMIN, "enable nobody")
    events = await harness.rows(AuditEvent, AuditEvent.kind == "admin_command")
    assert [(e.actor, e.payload["command"]) for e in events] == [
        ("telegram:1", "/agent list"),
        ("telegram:1", "/agent enable nobody"),
    ]
    assert events[1].payload["reply"].startswith("Not done")


async def test_a_failed_command_changes_nothing_but_is_audited(
    admins: AdminCommands, harness: Harness
) -> None:
    async with harness.db.transaction() as session:
        reply = await admins.agent_in(session, ADMIN, "set tester max_steps lots")
        assert reply == "max_steps must be a whole number"
    assert "max_steps: 5" in await admins.agent(ADMIN, "show tester")
    [failed, _] = await harness.rows(AuditEvent, AuditEvent.kind == "admin_command")
    assert failed.payload["reply"] == reply


def test_only_a_dry_run_needs_transactions_of_its_own() -> None:
    assert AdminCommands.runs_an_agent("test tester hi")
    assert not AdminCommands.runs_an_agent("list")
    assert not AdminCommands.runs_an_agent("")


async def test_audit_command_renders_a_run(admins: AdminCommands, harness: Harness) -> None:
    harness.use_model(ScriptedModel(turn("Hello!")))
    outcome = await harness.answer("hi")
    assert "model call, step 1" in await admins.audit_run(ADMIN, str(outcome.run_id))
    assert "no run" in await admins.audit_run(ADMIN, "nope")
    assert "Usage" in await admins.audit_run(ADMIN, "")
