"""Tool misuse by a model doing the worst it can: nothing it sends crashes or escapes scope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from agents.messages import ToolResult
from agents.tools.meetings import names_the_time
from bot.core.hours import free_slots
from bot.store.contacts import Identity, resolve_contact
from bot.store.models import (
    Contact,
    Deal,
    Meeting,
    Message,
    OutboxItem,
    PendingConfirmation,
    ToolInvocation,
)
from bot.store.types import utcnow
from tests.support.harness import Harness
from tests.support.models import ScriptedModel, call, turn


def _results(model: ScriptedModel) -> list[ToolResult]:
    """Tool results the model was shown, in order."""
    seen = model.requests[-1].messages
    return [m for m in seen if isinstance(m, ToolResult)]


def _error(result: ToolResult) -> dict[str, object]:
    assert result.is_error
    error: dict[str, object] = json.loads(result.content)["error"]
    return error


async def _make_bob(h: Harness) -> tuple[int, int]:
    async with h.db.transaction() as session:
        bob = await resolve_contact(session, Identity("console", "Bob", name="Bob"))
        deal = Deal(contact_id=bob.id, title="Bob's deal", stage="qualified")
        session.add(deal)
        await session.flush()
        return bob.id, deal.id


async def test_malformed_and_invalid_arguments_come_back_as_structured_errors(
    harness: Harness,
) -> None:
    model = ScriptedModel(
        turn("", call("send_message", raw="{not json", id="a")),
        turn("", call("send_message", {"text": ""}, id="b")),
        turn("", call("send_message", {"text": "hi", "bcc": "all"}, id="c")),
        turn("", call("get_recent_messages", {"n": "lots"}, id="d")),
        turn("", call("delete_everything", {}, id="e")),
    )
    harness.use_model(model)
    await harness.add_agent(max_steps=5)
    outcome = await harness.answer("hello")
    # The run survived five bad calls and stopped only at the step cap.
    assert "step limit" in outcome.reason
    results = _results(model)
    kinds = [_error(r)["type"] for r in results]
    assert kinds == ["invalid_json", "invalid_arguments", "invalid_arguments", "invalid_arguments"]
    assert _error(results[0])["received"] == "{not json"
    problems = _error(results[2])["problems"]
    assert isinstance(problems, list) and problems[0]["field"] == "bcc"
    assert [
        i
        for i in await harness.rows(OutboxItem, OutboxItem.channel == "console")
        if i.author == "agent"
    ] == []


async def test_unknown_or_disallowed_tool_is_refused(harness: Harness) -> None:
    await harness.add_agent(tools=["get_contact", "handoff_to_human"])
    model = ScriptedModel(turn("", call("send_message", {"text": "hi"})), turn("", call("finish")))
    harness.use_model(model)
    outcome = await harness.answer("hello")
    assert outcome.status == "finished"
    [result] = _results(model)
    assert _error(result)["type"] == "unknown_tool"
    assert not [
        i
        for i in await harness.rows(OutboxItem, OutboxItem.channel == "console")
        if i.author == "agent"
    ]


async def test_agent_talking_to_ann_cannot_read_or_message_bob(harness: Harness) -> None:
    bob_id, bob_deal = await _make_bob(harness)
    model = ScriptedModel(
        turn("", call("get_contact", {"contact_id": bob_id}, id="1")),
        turn("", call("get_recent_messages", {"contact_id": bob_id}, id="2")),
        turn("", call("send_message", {"text": "Hi Bob", "contact_id": bob_id}, id="3")),
        turn("", call("update_deal_stage", {"deal_id": bob_deal, "stage": "proposal"}, id="4")),
        turn("", call("finish")),
    )
    harness.use_model(model)
    await harness.answer("hello", contact="Ann")
    results = _results(model)
    assert [_error(r)["type"] for r in results] == ["out_of_scope"] * 4
    assert not any("Bob" in r.content.replace(f"contact {bob_id}", "") for r in results[:2])
    outbox = await harness.rows(OutboxItem, OutboxItem.channel == "console")
    assert all(item.contact_id != bob_id for item in outbox)
    [deal] = await harness.rows(Deal, Deal.id == bob_deal)
    assert deal.stage == "qualified"


async def test_replayed_state_changing_call_does_nothing_twice(harness: Harness) -> None:
    send = call("send_message", {"text": "Thanks, noted!"})
    move = call("update_deal_stage", {"stage": "qualified"})
    model = ScriptedModel(turn("", send, move), turn("", send, move), turn("", call("finish")))
    harness.use_model(model)
    outcome = await harness.answer("hello")
    assert outcome.status == "finished"
    agent_items = [
        i
        for i in await harness.rows(OutboxItem, OutboxItem.channel == "console")
        if i.author == "agent"
    ]
    assert [i.text for i in agent_items] == ["Thanks, noted!"]
    replays = [json.loads(r.content) for r in _results(model)[2:]]
    assert all(r["replayed"] for r in replays)
    assert len(await harness.rows(Deal)) == 1
    assert len(await harness.rows(ToolInvocation)) == 2
    assert [m.text for m in await harness.rows(Message, Message.direction == "out")] == [
        "Thanks, noted!"
    ]


async def test_marking_a_deal_lost_becomes_a_pending_confirmation(harness: Harness) -> None:
    model = ScriptedModel(
        turn("", call("update_deal_stage", {"stage": "qualified"}, id="1")),
        turn("", call("update_deal_stage", {"stage": "lost"}, id="2")),
        turn("", call("finish")),
    )
    harness.use_model(model)
    await harness.answer("we chose a competitor")
    [deal] = await harness.rows(Deal)
    assert deal.stage == "qualified"
    [pending] = await harness.rows(PendingConfirmation)
    assert (pending.action, pending.arguments["stage"], pending.status) == (
        "update_deal_stage",
        "lost",
        "pending",
    )
    assert json.loads(_results(model)[1].content)["pending_confirmation"] is True


async def test_meeting_at_a_time_the_contact_never_agreed_to_is_refused(harness: Harness) -> None:
    when = (utcnow() + timedelta(days=3)).replace(microsecond=0).isoformat()
    model = ScriptedModel(
        turn("", call("schedule_meeting", {"starts_at": when, "contact_quote": "Tuesday 3pm"})),
        turn("", call("finish")),
    )
    harness.use_model(model)
    await harness.answer("tell me more about the product")
    assert _error(_results(model)[0])["type"] == "not_agreed"
    assert await harness.rows(Meeting) == []


async def test_words_that_name_no_time_do_not_book_a_meeting(harness: Harness) -> None:
    # The contact did write "yes, book me then", but it names no time: a model could pin it
    # on any slot it liked.
    later = utcnow() + timedelta(days=2)
    slot = free_slots(harness.app.runner.hours, now=later, working_days=2, booked=[])[0]
    book = call(
        "schedule_meeting", {"starts_at": slot.isoformat(), "contact_quote": "yes, book me then"}
    )
    model = ScriptedModel(turn("", book), turn("", call("finish")))
    harness.use_model(model)
    await harness.answer("yes, book me then")
    assert _error(_results(model)[0])["type"] == "time_not_named"
    assert await harness.rows(Meeting) == []


def test_a_time_is_named_in_the_ways_people_write_it() -> None:
    utc, kathmandu = ZoneInfo("UTC"), ZoneInfo("Asia/Kathmandu")
    at = datetime(2026, 12, 8, 14, 30, tzinfo=UTC)  # 20:15 in Kathmandu
    for said in ["Tue 14:30 is fine", "2:30pm works", "2:30 PM please", "14.30", "8:15 pm ok"]:
        assert names_the_time(said, at, [kathmandu, utc]), said
    for said in ["yes", "the first one", "14:300", "4:30pm", "at 114:30", "2:30am"]:
        assert not names_the_time(said, at, [kathmandu, utc]), said
    three = datetime(2026, 12, 8, 15, 0, tzinfo=UTC)
    assert names_the_time("3pm", three, [utc]) and names_the_time("15h", three, [utc])


async def test_meeting_the_contact_proposed_is_booked_once(harness: Harness) -> None:
    # Meetings are booked only on free slots of the working hours: one a few days ahead.
    later = utcnow() + timedelta(days=2)
    slot = free_slots(harness.app.runner.hours, now=later, working_days=2, booked=[])[0]
    when, said = slot.isoformat(), f"{slot:%A} at {slot:%H:%M} works"
    book = call("schedule_meeting", {"starts_at": when, "contact_quote": said})
    model = ScriptedModel(turn("", book), turn("", book), turn("", call("finish")))
    harness.use_model(model)
    await harness.answer(f"{said} for me")
    [meeting] = await harness.rows(Meeting)
    assert meeting.starts_at.isoformat() == when


async def test_meeting_in_the_past_is_refused(harness: Harness) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    model = ScriptedModel(
        turn("", call("schedule_meeting", {"starts_at": past, "contact_quote": "yesterday"})),
        turn("", call("finish")),
    )
    harness.use_model(model)
    await harness.answer("yesterday was fine")
    assert _error(_results(model)[0])["type"] == "invalid_time"


async def test_unreachable_contact_is_not_messaged(harness: Harness) -> None:
    conversation_id = await harness.receive("first")
    async with harness.db.transaction() as session:
        await session.execute(update(Contact).values(unreachable=True))
    model = ScriptedModel(
        turn("", call("send_message", {"text": "hello?"})), turn("", call("finish"))
    )
    harness.use_model(model)
    await harness.answer("second")
    assert _error(_results(model)[0])["type"] == "unreachable"
    assert conversation_id == 1
