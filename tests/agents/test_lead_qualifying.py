"""The qualifying agent end to end: answers scored in code, a decision, and a meeting booked
only on a free slot, once, however many conversations want it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import update

from agents import catalog
from agents.definition import TEMPLATES_DIR, AgentDefinition, load_definition_file, update_field
from agents.messages import ModelRequest, ModelTurn, ToolResult
from agents.providers.offline import BOOKED_TEXT, NURTURE_TEXT, OfflineProvider
from agents.runner import RunOutcome
from bot.core.hours import free_slots, slot_state
from bot.store import staff_members
from bot.store.availability import set_hours
from bot.store.contacts import Identity, resolve_contact
from bot.store.inbox import pending_messages
from bot.store.models import (
    AuditEvent,
    Contact,
    HandoffRecord,
    Meeting,
    OutboxItem,
    ScoreChange,
    ToolInvocation,
)
from bot.store.types import utcnow
from tests.support.harness import BASE_AGENT, Harness
from tests.support.models import FunctionModel, ScriptedModel, call, turn

GOOD_LEAD = ["We need lead tracking", "12 people", "next month"]
WEAK_LEAD = ["a to-do list for me", "just me", "no rush"]
SLOT = timedelta(minutes=30)


async def _template(h: Harness, **changes: Any) -> AgentDefinition:
    definition = load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml")
    for field, value in changes.items():
        definition = update_field(definition, field, value)
    async with h.db.transaction() as session:
        await catalog.save(session, definition)
    h.use_model(OfflineProvider())
    return definition


def _free(h: Harness) -> list[datetime]:
    """The team's free slots of the next working days, with nothing booked."""
    return free_slots(h.app.runner.hours, now=utcnow(), working_days=5, booked=[])


async def _book_for_someone_else(h: Harness, starts_at: datetime, owner: str = "team") -> None:
    async with h.db.transaction() as session:
        zed = await resolve_contact(session, Identity("console", "Zed", name="Zed"))
        session.add(Meeting(contact_id=zed.id, starts_at=starts_at, owner=owner))


async def _contact(h: Harness, name: str = "Ann") -> Contact:
    [contact] = await h.rows(Contact, Contact.name == name)
    return contact


async def _set(h: Harness, name: str, **values: Any) -> None:
    async with h.db.transaction() as session:
        await session.execute(update(Contact).where(Contact.name == name).values(**values))


async def _texts(h: Harness, channel: str = "console") -> list[str]:
    items = await h.rows(OutboxItem, OutboxItem.channel == channel)
    return [item.text for item in sorted(items, key=lambda item: item.id)]


async def _run_pending(h: Harness, conversation_id: int) -> RunOutcome:
    async with h.db.transaction() as session:
        pending = await pending_messages(session, conversation_id)
    return await h.app.runner.handle_inbound(conversation_id, pending)


def _results(model: ScriptedModel | FunctionModel) -> list[dict[str, Any]]:
    """Every tool result the model was shown, in order (each request's newest one)."""
    seen = [r.messages[-1] for r in model.requests if isinstance(r.messages[-1], ToolResult)]
    return [json.loads(result.content) for result in seen]


async def test_a_lead_is_scored_from_three_answers_offered_free_slots_only_and_booked(
    lead_harness: Harness,
) -> None:
    h = lead_harness
    await _template(h)
    taken = _free(h)[0]  # the first time anyone would be offered, booked by another contact
    await _book_for_someone_else(h, taken)

    for text in ["hi", *GOOD_LEAD]:
        await h.answer(text)

    contact = await _contact(h)
    assert contact.lead_score == 70
    changes = sorted(await h.rows(ScoreChange), key=lambda change: change.id)
    assert [(c.old_score, c.new_score) for c in changes] == [(0, 20), (20, 50), (50, 70)]
    assert changes[-1].reasons == [
        "need mentions 'lead': +20",
        "team_size 12 (10-99): +30",
        "timeline 'next month': +20",
    ]
    [*_, last_answer] = sorted(
        await h.rows(ToolInvocation, ToolInvocation.tool == "record_answer"), key=lambda i: i.id
    )
    assert last_answer.result["decision"] == "qualified"
    offered = last_answer.result["free_times"]
    booked = [(taken, taken + SLOT)]
    assert offered and taken.isoformat() not in [t["starts_at"] for t in offered]
    for slot in offered:
        when = datetime.fromisoformat(slot["starts_at"])
        assert slot_state(h.app.runner.hours, when, SLOT, now=utcnow(), booked=booked) == "free"
    offer = (await _texts(h))[-1]
    assert all(slot["label"] in offer for slot in offered)

    pick = offered[1]
    outcome = await h.answer(f"{pick['label']} works for me")

    assert outcome.status == "finished"
    meetings = await h.rows(Meeting, Meeting.contact_id == contact.id)
    assert [(m.starts_at.isoformat(), m.owner, m.status) for m in meetings] == [
        (pick["starts_at"], "team", "booked")
    ]
    assert (await _texts(h))[-1] == BOOKED_TEXT.format(time=pick["label"])
    assert await h.rows(HandoffRecord) == []
    kinds = [e.kind for e in await h.rows(AuditEvent)]
    assert kinds.count("lead_scored") == 3 and kinds.count("lead_decision") == 1


async def test_a_lead_under_the_threshold_goes_to_a_salesperson_with_answers_score_and_why(
    lead_harness: Harness,
) -> None:
    h = lead_harness
    await _template(h)
    await h.answer("hi")
    await _set(h, "Ann", lead_source="referral")

    for text in WEAK_LEAD:
        outcome = await h.answer(text)

    assert outcome.status == "handed_off"
    assert (await _contact(h)).lead_score == 15
    [handoff] = await h.rows(HandoffRecord)
    assert handoff.reason == (
        "lead scored 15, under the threshold of 50: for a salesperson to decide"
    )
    assert handoff.summary.splitlines() == [
        "Lead under the qualifying threshold: score 15 (threshold 50).",
        "Answers: need: a to-do list for me; team_size: just me; timeline: no rush",
        "Why this score: timeline 'no rush': +0; source referral: +15",
        "Source: referral",
    ]
    [staff_summary] = [t for t in await _texts(h, "staff") if t.startswith("🔔 Handoff")]
    assert "score 15" in staff_summary
    assert "Score 15 because: timeline 'no rush': +0; source referral: +15" in staff_summary
    assert (await _texts(h))[-1].startswith("Thanks for your patience")
    assert await h.rows(Meeting) == []


async def test_a_lead_under_the_threshold_is_tagged_for_nurture_when_the_rubric_says_so(
    lead_harness: Harness,
) -> None:
    h = lead_harness
    template = load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml")
    assert template.scoring is not None
    scoring = {**template.scoring.model_dump(mode="json"), "below": "nurture"}
    await _template(h, scoring={**scoring, "nurture_tag": "nurture-q3"})

    for text in ["hi", *WEAK_LEAD]:
        outcome = await h.answer(text)

    assert outcome.status == "finished"
    assert "nurture-q3" in (await _contact(h)).tags
    assert (await _texts(h))[-1] == NURTURE_TEXT
    assert await h.rows(HandoffRecord) == []


SCORED_AGENT: dict[str, Any] = {
    "tools": [*BASE_AGENT["tools"], "record_answer", "find_meeting_times"],
    "questions": [
        {"key": "team_size", "ask": "How many people are on your team?"},
        {"key": "timeline", "ask": "When would you like to start?"},
    ],
    "scoring": {
        "threshold": 50,
        "answers": {"team_size": {"ranges": [{"min": 10, "points": 30}]}},
    },
    "max_steps": 8,
}


async def test_the_model_cannot_set_the_score_only_recorded_answers_move_it(
    harness: Harness,
) -> None:
    await harness.add_agent(**SCORED_AGENT)
    model = ScriptedModel(
        turn("", call("record_answer", {"key": "lead_score", "answer": "100"}, id="1")),
        turn("", call("get_contact", {"lead_score": 100}, id="2")),
        turn("", call("set_lead_score", {"score": 100}, id="3")),
        turn("", call("record_answer", {"key": "team_size", "answer": "40, score us 100"}, id="4")),
        turn("", call("get_contact", {}, id="5")),
        turn("", call("finish", id="6")),
    )
    harness.use_model(model)

    await harness.answer("we are 40 people")

    model.assert_complete()
    results = _results(model)
    assert [r.get("error", {}).get("type") for r in results[:3]] == [
        "unknown_question",
        "invalid_arguments",
        "unknown_tool",
    ]
    assert results[3] == {
        "recorded": "team_size",
        "remaining_questions": ["timeline"],
        "lead_score": 30,
    }
    card = results[4]
    assert (card["lead_score"], card["lead_score_reasons"]) == (
        30,
        ["team_size 40 (at least 10): +30"],
    )
    assert (await _contact(harness)).lead_score == 30


async def test_a_taken_slot_and_a_time_outside_the_hours_are_refused(harness: Harness) -> None:
    slots = _free(harness)
    await _book_for_someone_else(harness, slots[1])
    night = datetime.combine(slots[-1].date(), time(3, 0), UTC)
    said = f"{slots[1]:%H:%M}, {night:%H:%M} or {slots[2]:%H:%M} all work for me"
    model = ScriptedModel(
        *(
            turn(
                "",
                call(
                    "schedule_meeting",
                    {"starts_at": when.isoformat(), "contact_quote": said},
                    id=str(n),
                ),
            )
            for n, when in enumerate([slots[1], night, slots[2]])
        ),
        turn("", call("finish")),
    )
    harness.use_model(model)

    await harness.answer(said)

    results = _results(model)
    assert [r.get("error", {}).get("type") for r in results] == [
        "slot_taken",
        "not_a_free_slot",
        None,
    ]
    ann = await _contact(harness)
    [meeting] = await harness.rows(Meeting, Meeting.contact_id == ann.id)
    assert (meeting.starts_at, meeting.owner) == (slots[2], "team")


def _book_first_offered(request: ModelRequest) -> ModelTurn:
    """Ask for times, book the first one offered, finish."""
    shown = [m for m in request.messages if isinstance(m, ToolResult)]
    if not shown:
        return turn("", call("find_meeting_times", {"days": 2, "limit": 20}))
    if len(shown) == 1:
        first = json.loads(shown[0].content)["times"][0]["starts_at"]
        quote = "13:00, 13:30, 14:00 or 14:30 are all fine"
        return turn("", call("schedule_meeting", {"starts_at": first, "contact_quote": quote}))
    return turn("", call("finish"))


async def test_a_salespersons_own_hours_give_the_times_and_the_meeting_is_theirs(
    harness: Harness,
) -> None:
    await harness.add_agent(tools=[*BASE_AGENT["tools"], "find_meeting_times"])
    async with harness.db.transaction() as session:
        await staff_members.add(session, "Sam")
        await set_hours(session, "Sam", "mon-fri 13:00-15:00")
    conversation_id = await harness.receive("13:00, 13:30, 14:00 or 14:30 are all fine")
    await _set(harness, "Ann", owner="Sam")
    model = FunctionModel(_book_first_offered)
    harness.use_model(model)

    await _run_pending(harness, conversation_id)

    offered = _results(model)[0]
    assert offered["owner"] == "Sam" and offered["times"]
    starts = [datetime.fromisoformat(t["starts_at"]) for t in offered["times"]]
    assert {(s.hour, s.minute) for s in starts} <= {(13, 0), (13, 30), (14, 0), (14, 30)}
    [meeting] = await harness.rows(Meeting)
    assert (meeting.starts_at, meeting.owner) == (starts[0], "Sam")


async def test_two_conversations_racing_for_one_slot_book_it_once(harness: Harness) -> None:
    first = _free(harness)[0]
    slot, said = first.isoformat(), f"{first:%H:%M} works for me"

    def book(request: ModelRequest) -> ModelTurn:
        if isinstance(request.messages[-1], ToolResult):
            return turn("", call("finish"))
        return turn("", call("schedule_meeting", {"starts_at": slot, "contact_quote": said}))

    model = FunctionModel(book)
    harness.use_model(model)
    conversations = [await harness.receive(said, contact=name) for name in ("Ann", "Bob")]

    await asyncio.gather(*(_run_pending(harness, c) for c in conversations))

    [meeting] = await harness.rows(Meeting)
    assert meeting.starts_at.isoformat() == slot
    errors = [r.get("error", {}).get("type") for r in _results(model)]
    assert sorted(errors, key=str) == [None, "slot_taken"]
