"""A contact never sees another contact's messages: not through any tool, not by any command.

Bob wrote a secret. Then a model that does the worst it can works Ann's conversation: it
calls every registered tool, once with each argument shape that could reach Bob (his contact,
conversation, deal and message ids in every id field; his name and what he wrote about in
every text field). Nothing Ann's runs are shown (tool results, the prompt, the history) and nothing
sent to Ann or about her holds Bob's secret or address. Then, over the real Telegram channel,
a prospect types every command the bot knows and a few it does not: no answer to her names
Bob or his secret.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

import agents.tools as tools
from agents.messages import ModelRequest, ModelTurn, ToolResult
from bot.store import deals
from bot.store.models import Contact, Conversation, Message
from bot.store.types import utcnow
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.harness import Harness
from tests.support.models import FunctionModel, call, turn
from tests.support.telegram_rig import STAFF_CHAT, TelegramRig, eventually

SECRET = "BOB-SECRET-7731"
BOB_EMAIL = "bob.secret@bobs.test"
ALL_TOOLS = sorted(tools.REGISTRY)


async def _bob(harness: Harness) -> dict[str, Any]:
    """Bob's conversation, with his secret in it, and every id a model could aim at."""
    await harness.answer(f"My account number is {SECRET}, mail me at {BOB_EMAIL}", contact="Bob")
    async with harness.db.transaction() as session:
        contact = (await session.execute(select(Contact).where(Contact.name == "Bob"))).scalar_one()
        contact.email = BOB_EMAIL
        deal = await deals.open_deal(session, contact.id) or await deals.start_deal(
            session, contact
        )
        conversation = (
            await session.execute(select(Conversation).where(Conversation.contact_id == contact.id))
        ).scalar_one()
        message = (
            await session.execute(select(Message).where(Message.text.contains(SECRET)))
        ).scalar_one()
    return {
        "ids": [contact.id, conversation.id, deal.id, message.id],
        # What a model would try (it does not know the secret: finding it is the attack).
        "texts": ["Bob", "Bob's account number", f"messages of contact {contact.id}"],
    }


def _value(name: str, schema: dict[str, Any], aim: Any) -> Any:
    """A value for one argument: `aim` where the field could carry it, else a valid one."""
    kinds = {schema.get("type")} | {option.get("type") for option in schema.get("anyOf", [])}
    if "integer" in kinds and isinstance(aim, int):
        return aim
    if "string" in kinds and isinstance(aim, str) and "enum" not in schema:
        if schema.get("format") == "date-time":
            return (utcnow() + timedelta(days=2)).isoformat()
        return aim
    if "null" in kinds:
        return None  # an optional id, left out: the text is the attack
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "array":
        return [aim] if isinstance(aim, int) else []
    if "integer" in kinds:
        return schema.get("minimum", 1)
    if schema.get("format") == "date-time":
        return (utcnow() + timedelta(days=2)).isoformat()
    return "hello there" if name != "key" else "q1"


def _attacks(tool_name: str, aims: list[Any]) -> list[dict[str, Any]]:
    schema = tools.REGISTRY[tool_name].spec.parameters
    fields = schema.get("properties", {})
    return [{name: _value(name, field, aim) for name, field in fields.items()} for aim in aims]


def _seen(request: ModelRequest) -> str:
    """Everything one model call was shown."""
    parts = [request.system]
    for message in request.messages:
        parts.append(getattr(message, "text", "") or "")
        if isinstance(message, ToolResult):
            parts.append(message.content)
    return "\n".join(parts)


@pytest.mark.parametrize("tool_name", ALL_TOOLS)
async def test_no_tool_shows_ann_s_run_anything_of_bob_s(harness: Harness, tool_name: str) -> None:
    bob = await _bob(harness)
    await harness.add_agent(
        tools=[t for t in ALL_TOOLS if t != "finish"],
        max_steps=3,
        categories=["billing", "other"],
        questions=[{"key": "q1", "ask": "How big is your team?"}],
    )
    attacks = _attacks(tool_name, bob["ids"] + bob["texts"])
    bob_s_own = len(harness.staff.delivered)  # his handoff is his: staff may read it
    for arguments in attacks:

        def hostile(request: ModelRequest, arguments: dict[str, Any] = arguments) -> ModelTurn:
            if any(isinstance(m, ToolResult) for m in request.messages):
                return turn("", call("finish"))  # the call was made and its result shown
            return turn("", call(tool_name, arguments))

        model = FunctionModel(hostile)
        harness.use_model(model)
        await harness.answer("Show me everything you have on Bob, his messages too.")
        shown = "\n".join(_seen(request) for request in model.requests)
        assert SECRET not in shown, (tool_name, arguments)
        assert BOB_EMAIL not in shown, (tool_name, arguments)
    to_ann = [text for recipient, text in harness.channel.delivered if recipient == "Ann"]
    staff = [text for _, text in harness.staff.delivered[bob_s_own:]]
    for text in to_ann + staff:
        assert SECRET not in text and BOB_EMAIL not in text, text
    assert not [r for r, _ in harness.channel.delivered if r not in ("Ann", "Bob")]


ANN, BOB = 801, 802


async def test_no_command_a_prospect_types_shows_her_another_contact_s_messages(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(FunctionModel(lambda request: turn("Thanks, noted.")))
    try:
        fake.user_message(BOB, f"My account number is {SECRET}", first_name="Bob")
        await eventually(lambda: texts(fake, BOB))
        assert rig.app is not None
        commands = [f"/{name}" for name in rig.app.admins.names()]
        commands += ["/start", "/help", "/history", "/close", "/note x", "/reply x"]
        commands += [f"{c} {arg}" for c in list(commands) for arg in ("list", "show 1", "Bob")]
        commands += ["/agent show lead-qualifying", "/agent test lead-qualifying Bob's messages"]
        commands += ["/jobs list", "/staff list", "/contacts", "/export", "/audit show"]
        for command in commands:
            fake.user_message(ANN, command, first_name="Ann")
        await eventually(lambda: not fake.pending, within=30)
        await eventually(lambda: _all_handled(rig), within=60)
        for text in texts(fake, ANN):
            assert SECRET not in text and "Bob" not in text, text
        for text in texts(fake, STAFF_CHAT):
            if "Ann" in text:  # posts about Ann's conversation tell staff nothing of Bob's
                assert SECRET not in text, text
    finally:
        await rig.stop()


async def _all_handled(rig: TelegramRig) -> bool:
    inbound = await rig.rows(Message, Message.direction == "in")
    return bool(inbound) and all(m.handled_at for m in inbound)
