"""A lead qualified by email through the real OpenAI SDK: a local server speaking the Chat
Completions wire format plays the model, deciding from what the SDK sends it (the contact's
words, the tool results). The lead is scored from three answers, offered free slots only
(one is taken), booked at the one they name, gets the invite by email, and the owner's feed
shows it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from icalendar import Calendar

from agents.definition import TEMPLATES_DIR, load_definition_file
from agents.providers.openai import OpenAIProvider
from bot.core.hours import free_slots
from bot.store import meetings, staff_members
from bot.store.contacts import Identity, resolve_contact
from bot.store.models import Contact, Meeting, ScoreChange
from bot.store.types import utcnow
from tests.providers.wire import OpenAIWire
from tests.support.email_rig import EmailRig
from tests.support.local_http import LocalServer
from tests.support.mail_servers import Dovecot, MailUser, SmtpSink, free_port, make_mail
from tests.support.telegram_rig import eventually

ANN = "ann@prospect.test"
ANSWERS = ["We need to track leads and follow-ups", "12 people", "next week"]
QUESTIONS = [q.ask for q in load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml").questions]
KEYS = [q.key for q in load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml").questions]
OFFER = "Free times for a call: "
WIRE = OpenAIWire()


class ChatModel:
    """POST /v1/chat/completions: a qualifying model, decided from the request alone."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.offered: list[dict[str, str]] = []
        self.server = LocalServer({"/v1/chat/completions": self._complete})

    @property
    def base_url(self) -> str:
        return self.server.base_url

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        return web.json_response(self.decide(body["messages"]))

    def decide(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        last = messages[-1]
        if last["role"] == "tool":
            return self._after(
                _tool_name(messages, last["tool_call_id"]), json.loads(last["content"])
            )
        said = str(last["content"])
        ours = [str(m.get("content") or "") for m in messages if m["role"] == "assistant"]
        asked = next((q for q in QUESTIONS if ours and ours[-1].rstrip().endswith(q)), None)
        if asked is not None:
            key = KEYS[QUESTIONS.index(asked)]
            return _call("record_answer", {"key": key, "answer": said})
        if ours and OFFER in ours[-1]:
            return _call("find_meeting_times", {})
        return WIRE.text(f"Hi! {QUESTIONS[0]}")

    def _after(self, tool: str, result: dict[str, Any]) -> dict[str, Any]:
        if tool == "record_answer":
            remaining = result.get("remaining_questions") or []
            if remaining:
                return WIRE.text(f"Thanks! {QUESTIONS[KEYS.index(remaining[0])]}")
            self.offered = result.get("free_times") or []
            labels = "; ".join(t["label"] for t in self.offered)
            return WIRE.text(f"Great. {OFFER}{labels}. Which one suits you?")
        if tool == "find_meeting_times":
            said = self._said
            for slot in result["times"]:
                if slot["label"].rsplit(" ", 1)[0] in said:
                    return _call(
                        "schedule_meeting", {"starts_at": slot["starts_at"], "contact_quote": said}
                    )
            return _call("handoff_to_human", {"reason": "no offered time matched"})
        if tool == "schedule_meeting":
            return WIRE.text("You're booked, see you then!")
        return _call("finish", {})

    @property
    def _said(self) -> str:
        users = [m for m in self.requests[-1]["messages"] if m["role"] == "user"]
        return str(users[-1]["content"]).strip()


def _tool_name(messages: list[dict[str, Any]], call_id: str) -> str:
    for message in messages:
        for call in message.get("tool_calls") or []:
            if call["id"] == call_id:
                return str(call["function"]["name"])
    raise AssertionError(f"no tool call {call_id}")


_ids = iter(range(1, 10_000))


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return WIRE.tool_calls((f"call_{next(_ids)}", name, arguments))


@pytest.fixture
async def chat_model() -> AsyncIterator[ChatModel]:
    model = ChatModel()
    await model.start()
    try:
        yield model
    finally:
        await model.close()


async def test_a_lead_is_scored_offered_free_slots_booked_and_invited_through_the_sdk(
    database_url: str,
    dovecot_server: Dovecot,
    mail_user: MailUser,
    smtp: SmtpSink,
    chat_model: ChatModel,
) -> None:
    port = free_port()
    rig = EmailRig(
        database_url, dovecot_server, mail_user, smtp, events_port=port, events_secret="x" * 20
    )
    provider = OpenAIProvider("sk-test", base_url=chat_model.base_url, timeout=10, max_retries=0)
    await rig.start(provider)
    try:
        assert rig.app is not None
        taken = _first_free(rig)
        async with rig.app.db.transaction() as session:
            await staff_members.add(session, "Sam")
            token = await meetings.calendar_token(session, "Sam")
            zed = await resolve_contact(session, Identity("console", "Zed", name="Zed"))
            session.add(Meeting(contact_id=zed.id, starts_at=taken, owner="team"))

        rig.deliver(make_mail("hi", message_id="<m0@prospect.test>"))
        await eventually(lambda: len(smtp.to(ANN)) == 1, within=15)
        for n, answer in enumerate(ANSWERS, start=1):
            rig.deliver(make_mail(answer, message_id=f"<m{n}@prospect.test>"))
            await eventually(lambda n=n: len(smtp.to(ANN)) == n + 1, within=15)

        # Scored in code from the three answers: leads 20 + follow-ups 10, 12 people 30,
        # next week 30.
        [ann] = await rig.rows(Contact, Contact.email == ANN)
        assert ann.lead_score == 90
        [*_, scored] = await rig.rows(ScoreChange, ScoreChange.contact_id == ann.id)
        assert scored.new_score == 90 and len(scored.reasons) == 4
        offered = [datetime.fromisoformat(t["starts_at"]) for t in chat_model.offered]
        assert offered and taken not in offered  # only free slots are offered

        pick = chat_model.offered[1]["label"]
        rig.deliver(make_mail(f"{pick} works for me", message_id="<pick@prospect.test>"))
        [meeting] = await eventually(
            lambda: rig.rows(Meeting, Meeting.contact_id == ann.id), within=15
        )
        assert meeting.starts_at == offered[1]
        invite = await eventually(
            lambda: [r for r in smtp.to(ANN) if "text/calendar" in r.message.as_string()],
            within=15,
        )
        [part] = [p for p in invite[0].message.walk() if p.get_content_type() == "text/calendar"]
        [event] = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")
        assert str(event["uid"]) == meeting.uid and event.decoded("dtstart") == meeting.starts_at

        url = f"http://127.0.0.1:{port}/calendar/{token}.ics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            shown = Calendar.from_ical(await response.read()).walk("VEVENT")
        assert meeting.uid in [str(e["uid"]) for e in shown]

        # The SDK really carried the tools and the tool results both ways.
        sent_tools = {t["function"]["name"] for t in chat_model.requests[0]["tools"]}
        assert {"record_answer", "find_meeting_times", "schedule_meeting"} <= sent_tools
        assert any(
            m["role"] == "tool" and "lead_score" in m["content"]
            for r in chat_model.requests
            for m in r["messages"]
        )
    finally:
        await rig.stop()


def _first_free(rig: EmailRig) -> datetime:
    assert rig.app is not None and rig.app.runner.hours is not None
    return free_slots(rig.app.runner.hours, now=utcnow(), working_days=5, booked=[])[0]
