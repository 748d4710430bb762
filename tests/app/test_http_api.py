"""The events and contacts API over real HTTP on 127.0.0.1, against the test database."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from agents import catalog
from bot.app.http_api import MAX_BODY_BYTES, HttpApi
from bot.store import wakeups
from bot.store.audit import AuditLog, verify_chain
from bot.store.db import Database
from bot.store.leads import LeadFields, upsert_lead
from bot.store.models import AuditEvent, Contact, ContactEvent
from bot.store.refusals import Refusals
from tests.support.harness import agent_definition
from tests.support.rows import rows

SECRET = "the-events-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}
NOW = 1_700_000_010.0
"""The refusal counter's clock stands still, so no test's refusals straddle two minutes."""


@dataclass
class Api:
    """The running server and a client session pointed at it."""

    server: HttpApi
    http: aiohttp.ClientSession
    refusals: Refusals
    db: Database

    async def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, headers: Any = AUTH
    ) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(path, data=data, headers=headers) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(path) as response:
            return response.status, await response.json()


@pytest.fixture
async def api(db: Database) -> AsyncIterator[Api]:
    audit = AuditLog()
    refusals = Refusals(db, audit, clock=lambda: NOW)
    server = HttpApi(db, audit, refusals, secret=SECRET, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.bound_port}") as http:
            yield Api(server, http, refusals, db)
    finally:
        await server.stop()
        await refusals.aclose()


async def _lead(db: Database, **fields: Any) -> int:
    async with db.transaction() as session:
        contact, _ = await upsert_lead(session, LeadFields(**fields))
        return contact.id


async def _agent(db: Database, name: str, event: str) -> None:
    definition = agent_definition(name=name, triggers=[{"type": "event", "event": event}])
    async with db.transaction() as session:
        await catalog.save(session, definition)


async def _audit(db: Database, kind: str) -> list[AuditEvent]:
    return await rows(db, AuditEvent, AuditEvent.kind == kind)


async def _wakeups(db: Database, contact_id: int) -> list[Any]:
    async with db.transaction() as session:
        return await wakeups.for_contact(session, contact_id)


# POST /events


async def test_an_event_is_stored_and_wakes_the_agent_whose_trigger_it_matches(api: Api) -> None:
    contact_id = await _lead(api.db, email="ann@example.com")
    await _agent(api.db, "trial-nudger", "trial.started")
    await _agent(api.db, "renewal-nudger", "plan.renewed")

    status, body = await api.post(
        "/events",
        {"contact": {"email": "Ann@Example.com"}, "type": "trial.started", "data": {"plan": "pro"}},
    )

    assert status == 202
    assert body == {
        "event_id": body["event_id"],
        "contact_id": contact_id,
        "duplicate": False,
        "woke": ["trial-nudger"],
    }
    [event] = await rows(api.db, ContactEvent)
    assert (event.id, event.type, event.data, event.source) == (
        body["event_id"],
        "trial.started",
        {"plan": "pro"},
        "http",
    )
    [wakeup] = await _wakeups(api.db, contact_id)
    assert (wakeup.agent_name, wakeup.status) == ("trial-nudger", "pending")
    assert wakeup.cause == {"event_id": event.id, "event": "trial.started"}
    [audited] = await _audit(api.db, "event_received")
    assert audited.payload["source"] == "http"


@pytest.mark.parametrize(
    ("lead", "contact"),
    [
        ({"telegram_id": 4242}, {"telegram_id": 4242}),
        ({"telegram_id": 4242}, {"telegram_id": "4242"}),
        ({"external_id": "crm-7", "email": "bo@example.com"}, {"external_id": "crm-7"}),
        ({"external_id": "1234", "email": "bo@example.com"}, {"external_id": 1234}),
    ],
)
async def test_an_event_finds_its_contact_by_any_of_its_ids(
    api: Api, lead: dict[str, Any], contact: dict[str, Any]
) -> None:
    contact_id = await _lead(api.db, **lead)

    status, body = await api.post("/events", {"contact": contact, "type": "active_day"})

    assert status == 202
    assert body["contact_id"] == contact_id
    [event] = await rows(api.db, ContactEvent)
    assert (event.contact_id, event.data) == (contact_id, {})


async def test_an_event_for_a_contact_by_our_id(api: Api) -> None:
    contact_id = await _lead(api.db, email="cy@example.com")

    status, body = await api.post("/events", {"contact": {"id": contact_id}, "type": "seen"})

    assert (status, body["contact_id"]) == (202, contact_id)


async def test_the_same_id_twice_is_stored_and_wakes_once(api: Api) -> None:
    contact_id = await _lead(api.db, email="ann@example.com")
    await _agent(api.db, "trial-nudger", "trial.started")
    event = {"contact": {"email": "ann@example.com"}, "type": "trial.started", "id": "billing-1"}

    first = await api.post("/events", event)
    second = await api.post("/events", event)

    assert first[0] == 202
    assert second == (
        200,
        {"event_id": first[1]["event_id"], "contact_id": contact_id, "duplicate": True, "woke": []},
    )
    assert len(await rows(api.db, ContactEvent)) == 1
    assert len(await _wakeups(api.db, contact_id)) == 1


async def test_an_unknown_contact_is_404_with_the_reason(api: Api) -> None:
    await _lead(api.db, email="ann@example.com")

    status, body = await api.post(
        "/events", {"contact": {"email": "nobody@example.com"}, "type": "trial.started"}
    )

    assert status == 404
    assert body == {"error": "no contact with email nobody@example.com"}
    assert await rows(api.db, ContactEvent) == []


BAD_EVENTS: list[tuple[str, bytes, str]] = [
    ("not JSON", b'{"contact": ', "body is not JSON"),
    ("not UTF-8", b'{"type": "\xff"}', "body is not JSON"),
    ("not an object", b'["trial.started"]', "body must be a JSON object"),
    ("no contact", b'{"type": "trial.started"}', "body needs contact and type"),
    ("no type", b'{"contact": {"id": 1}}', "body needs contact and type"),
    (
        "two contact keys",
        b'{"contact": {"id": 1, "email": "a@b.c"}, "type": "x"}',
        "exactly one of id, email, telegram_id, external_id",
    ),
    ("an empty contact", b'{"contact": {}, "type": "x"}', "exactly one of"),
    ("a contact that is a string", b'{"contact": "a@b.c", "type": "x"}', "exactly one of"),
    ("an unknown contact key", b'{"contact": {"phone": "1"}, "type": "x"}', "contact has 'phone'"),
    ("a contact id that is text", b'{"contact": {"id": "ann"}, "type": "x"}', "positive integer"),
    ("a contact id that is a boolean", b'{"contact": {"id": true}, "type": "x"}', "positive"),
    (
        "a contact id beyond 64 bits",
        b'{"contact": {"id": 9223372036854775808}, "type": "x"}',
        "positive",
    ),
    ("an email that is not one", b'{"contact": {"email": "ann"}, "type": "x"}', "not an email"),
    ("a bad type", b'{"contact": {"id": 1}, "type": "Trial Started"}', "type must be"),
    ("a type that is a number", b'{"contact": {"id": 1}, "type": 7}', "type must be"),
    ("data that is a list", b'{"contact": {"id": 1}, "type": "x", "data": [1]}', "data must be"),
    ("an id that is a number", b'{"contact": {"id": 1}, "type": "x", "id": 5}', "id must be a"),
    ("an unknown field", b'{"contact": {"id": 1}, "type": "x", "when": 1}', "unknown field 'when'"),
    ("NaN", b'{"contact": {"id": 1}, "type": "x", "data": {"n": NaN}}', "NaN is not JSON"),
    ("a number too big", b'{"contact": {"id": 1}, "type": "x", "data": {"n": 1e999}}', "range"),
    ("NUL in text", b'{"contact": {"id": 1}, "type": "x", "data": {"n": "a\\u0000"}}', "NUL"),
    (
        "a lone surrogate",
        b'{"contact": {"id": 1}, "type": "x", "data": {"\\ud800": 1}}',
        "surrogate",
    ),
    ("deep nesting", b'{"data": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested too deeply"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [case[1:] for case in BAD_EVENTS], ids=[case[0] for case in BAD_EVENTS]
)
async def test_a_malformed_event_is_400_with_the_reason(api: Api, raw: bytes, reason: str) -> None:
    await _lead(api.db, email="a@b.c")

    status, body = await api.post("/events", raw=raw)

    assert status == 400, body
    assert reason in body["error"]
    assert await rows(api.db, ContactEvent) == []


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    contact_id = await _lead(api.db, email="ann@example.com")
    event = {"contact": {"id": contact_id}, "type": "x", "data": {"pad": "x" * MAX_BODY_BYTES}}

    status, body = await api.post("/events", event)

    assert status == 413
    assert body == {"error": f"body is larger than {MAX_BODY_BYTES} bytes"}


# Authentication


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no bearer token"),
        ({"Authorization": "Bearer "}, "no bearer token"),
        ({"Authorization": "Bearer not-the-secret"}, "wrong bearer token"),
        ({"Authorization": f"Basic {SECRET}"}, "wrong bearer token"),
        ({"Authorization": f"Bearer {SECRET}x"}, "wrong bearer token"),
    ],
)
async def test_a_request_without_the_secret_is_401_and_audited(
    api: Api, headers: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    contact_id = await _lead(api.db, email="ann@example.com")
    event = {"contact": {"id": contact_id}, "type": "trial.started"}

    with caplog.at_level(logging.INFO):
        for path in ("/events", "/contacts", "/events"):
            status, body = await api.post(path, event, headers=headers)
            assert (status, body) == (401, {"error": reason})
        await api.refusals.flush()

    assert await rows(api.db, ContactEvent) == []
    [row] = await _audit(api.db, "refused")
    assert row.actor == "http"
    assert (row.payload["reason"], row.payload["count"]) == (reason, 3)
    assert {"remote": "127.0.0.1", "path": "/contacts"} in row.payload["samples"]
    assert "not-the-secret" not in json.dumps(row.payload) and SECRET not in json.dumps(row.payload)
    assert "not-the-secret" not in caplog.text and SECRET not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"refused ({reason}) from http: {{'remote': '127.0.0.1', 'path': '/events'}}; "
        "more this minute are only counted"
    ]


async def test_a_flood_of_refusals_is_one_audit_row(api: Api) -> None:
    for _ in range(200):
        status, _ = await api.post("/events", {}, headers={"Authorization": "Bearer guess"})
        assert status == 401
    await api.refusals.flush()

    [row] = await _audit(api.db, "refused")
    assert row.payload["count"] == 200
    async with api.db.transaction() as session:
        assert (await verify_chain(session))[1] == []


async def test_healthz_needs_no_token(api: Api) -> None:
    assert await api.get("/healthz") == (200, {"status": "ok"})


async def test_healthz_is_503_when_the_database_cannot_be_read(tmp_path: Any) -> None:
    missing = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'crm.db'}")
    refusals = Refusals(missing, AuditLog())
    server = HttpApi(missing, AuditLog(), refusals, secret=SECRET)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.bound_port}/healthz") as response,
        ):
            assert (response.status, await response.json()) == (503, {"status": "unavailable"})
    finally:
        await server.stop()
        await missing.dispose()


async def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    assert await api.post("/nowhere", {}) == (404, {"error": "Not Found"})
    async with api.http.get("/events") as response:
        assert (response.status, await response.json()) == (405, {"error": "Method Not Allowed"})
        assert response.headers["Allow"] == "POST"


async def test_a_failure_of_ours_is_a_500_and_the_server_goes_on(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    contact_id = await _lead(api.db, email="ann@example.com")
    async with api.db.transaction() as session:
        await session.execute(text("ALTER TABLE contact_events RENAME TO contact_events_gone"))

    with caplog.at_level(logging.ERROR, "bot.app.http_api"):
        status, body = await api.post("/events", {"contact": {"id": contact_id}, "type": "x"})

    assert status == 500
    assert body == {"error": "internal error; the server log has the details"}
    assert "contact_events" not in json.dumps(body)
    [record] = [r for r in caplog.records if r.name == "bot.app.http_api"]
    assert record.getMessage() == "POST /events failed" and record.exc_info is not None
    assert await api.get("/healthz") == (200, {"status": "ok"})
    status, _ = await api.post("/contacts", {"email": "bo@example.com"})
    assert status == 500  # a new lead's event cannot be stored either: nor is the lead
    assert await rows(api.db, Contact, Contact.email == "bo@example.com") == []


# POST /contacts


async def test_a_lead_is_created_then_updated_then_unchanged(api: Api) -> None:
    lead = {
        "name": "Ann Lee",
        "email": "Ann@Example.com",
        "phone": "+1 555 0100",
        "company": "Acme",
        "tags": "trial; web ;",
        "owner": "maria",
        "source": "web-form",
        "external_id": "crm-1",
        "timezone": "Europe/Berlin",
        "fields": {"plan": "pro", "seats": 12, "annual": True, "note": None},
    }

    created = await api.post("/contacts", lead)
    updated = await api.post("/contacts", {"external_id": "crm-1", "tags": ["vip"], "phone": "1"})
    unchanged = await api.post("/contacts", {"email": "ann@example.com", "tags": ["trial"]})

    contact_id = created[1]["contact_id"]
    assert created == (201, {"contact_id": contact_id, "change": "created", "woke": []})
    assert updated == (200, {"contact_id": contact_id, "change": "updated", "woke": []})
    assert unchanged == (200, {"contact_id": contact_id, "change": "unchanged", "woke": []})
    [contact] = await rows(api.db, Contact)
    assert (contact.name, contact.email, contact.phone, contact.owner) == (
        "Ann Lee",
        "ann@example.com",
        "1",
        "maria",
    )
    assert (contact.lead_source, contact.external_id, contact.timezone) == (
        "web-form",
        "crm-1",
        "Europe/Berlin",
    )
    assert contact.tags == ["trial", "web", "vip"]
    assert contact.custom_fields == {
        "company": "Acme",
        "plan": "pro",
        "seats": "12",
        "annual": "true",
    }
    [event] = await rows(api.db, ContactEvent)
    assert (event.type, event.key, event.source) == (
        "contact.created",
        f"contact.created:{contact_id}",
        "http",
    )
    audited = await _audit(api.db, "lead_upserted")
    assert [(a.actor, a.payload["change"]) for a in audited] == [
        ("http", "created"),
        ("http", "updated"),
        ("http", "unchanged"),
    ]
    assert audited[0].payload["event_id"] == event.id
    assert audited[1].payload["fields"] == ["external_id", "phone", "tags"]


async def test_a_new_lead_wakes_an_agent_with_a_contact_created_trigger(api: Api) -> None:
    await _agent(api.db, "welcomer", "contact.created")

    status, body = await api.post("/contacts", {"email": "new@example.com", "name": "New"})
    again = await api.post("/contacts", {"email": "new@example.com", "name": "Newer"})

    assert (status, body["woke"]) == (201, ["welcomer"])
    assert again[1] == {"contact_id": body["contact_id"], "change": "updated", "woke": []}
    [wakeup] = await _wakeups(api.db, body["contact_id"])
    assert wakeup.agent_name == "welcomer"
    assert wakeup.cause["event"] == "contact.created"


async def test_a_lead_known_only_by_telegram_id(api: Api) -> None:
    status, body = await api.post("/contacts", {"telegram_id": "777", "name": "Tg"})

    assert status == 201
    [contact] = await rows(api.db, Contact)
    assert (contact.id, contact.telegram_user_id) == (body["contact_id"], 777)


BAD_LEADS: list[tuple[str, Any, str]] = [
    ("no identifier", {"name": "Ann"}, "needs an email, a telegram_id or an external_id"),
    ("only empty identifiers", {"email": " ", "external_id": ""}, "needs an email"),
    ("not an object", ["ann@example.com"], "body must be a JSON object"),
    ("an unknown field", {"email": "a@b.c", "mail": "x"}, "unknown field 'mail'"),
    ("a name that is a number", {"email": "a@b.c", "name": 5}, "name must be a string"),
    ("a name too long", {"email": "a@b.c", "name": "n" * 201}, "longer than 200"),
    ("a bad telegram_id", {"telegram_id": -5}, "telegram_id must be a positive integer"),
    ("tags of numbers", {"email": "a@b.c", "tags": [1, 2]}, "tags must be a list of strings"),
    ("fields not an object", {"email": "a@b.c", "fields": "x"}, "fields must be an object"),
    ("a nested field", {"email": "a@b.c", "fields": {"a": {"b": 1}}}, "must be a string, number"),
    ("a bad timezone", {"email": "a@b.c", "timezone": "Mars/Base"}, "not an IANA time zone"),
]


@pytest.mark.parametrize(
    ("body", "reason"), [case[1:] for case in BAD_LEADS], ids=[case[0] for case in BAD_LEADS]
)
async def test_a_malformed_lead_is_400_with_the_reason(api: Api, body: Any, reason: str) -> None:
    status, answer = await api.post("/contacts", body)

    assert status == 400, answer
    assert reason in answer["error"]
    assert await rows(api.db, Contact) == []


async def test_a_lead_that_would_take_another_contacts_email_is_409(api: Api) -> None:
    await _lead(api.db, email="ann@example.com", external_id="crm-1")
    await _lead(api.db, email="bo@example.com", external_id="crm-2")

    status, body = await api.post("/contacts", {"external_id": "crm-2", "email": "ann@example.com"})

    assert status == 409
    assert body == {"error": "another contact already has this email"}
    [bo] = await rows(api.db, Contact, Contact.external_id == "crm-2")
    assert bo.email == "bo@example.com"
    assert await _audit(api.db, "lead_upserted") == []
