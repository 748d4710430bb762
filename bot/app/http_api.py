"""The HTTP API other systems use: `POST /events`, `POST /contacts`, `GET /healthz`, and
the staff members' calendar feeds, `GET /calendar/TOKEN.ics` (`bot.desk.calendar_feed`).

A billing system reports `trial.started`, a web form sends a lead: each is one JSON request
with `Authorization: Bearer <EVENTS_SECRET>`. Answers are JSON; an error is `{"error": why}`:

- 400 a body that is not JSON, not an object, or has a field missing, unknown or malformed;
- 401 no bearer token or the wrong one; 404 no contact matches (`/events`);
- 409 a lead whose email or Telegram id belongs to another contact (`/contacts`);
- 413 a body over `MAX_BODY_BYTES`; 500 a failure of ours (logged with its traceback).

`POST /events` answers 202 when the event is stored, 200 when its `id` was seen before (then
nothing is stored or woken again). `POST /contacts` answers 201 when it created the contact
and 200 when it updated it or found nothing to change; a new contact gets the event
`contact.created` in the same transaction, so no lead is ever left without it.

Refused requests are counted by `Refusals`: anyone who can reach the port can send them, so
they become one audit row per reason and minute, not one each (the first is logged).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bot.app.http_bodies import (
    EVENT_FIELDS,
    LEAD_FIELDS,
    BadRequest,
    contact_ref,
    identity_ref,
    json_object,
    lead_fields,
    read_json,
)
from bot.core.errors import ConfigurationError, NotFoundError
from bot.core.settings import Settings
from bot.desk.calendar_feed import feed_for_token
from bot.store import cursors
from bot.store.audit import AuditLog
from bot.store.db import Database, Tx
from bot.store.leads import (
    ContactRef,
    LeadFields,
    RowRejected,
    find_by_ref,
    import_lead,
)
from bot.store.refusals import Refusals
from scheduler.events import BadEvent, EventIntake, check_event

log = logging.getLogger("bot.app.http_api")
SOURCE = "http"
MAX_BODY_BYTES = 65_536
HEALTH_TIMEOUT_SECONDS = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Answer(Exception):
    """An error answer, raised where it is decided; the middleware sends it as JSON."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, dict(headers or {})


# Reading bodies


# The server


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


class HttpApi:
    """Serves the API on `host:port` (port 0: a free one, see `bound_port`)."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        refusals: Refusals,
        *,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        intake: EventIntake | None = None,
    ) -> None:
        if not secret:
            raise ConfigurationError("EVENTS_SECRET is required for the events API")
        self.db, self.audit, self.refusals = db, audit, refusals
        self.intake = intake or EventIntake(db, audit)
        self.host, self.port = host, port
        self._secret = secret.encode()
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_settings(
        cls, db: Database, audit: AuditLog, refusals: Refusals, settings: Settings
    ) -> HttpApi | None:
        """The API as EVENTS_LISTEN, EVENTS_PORT and EVENTS_SECRET say; None without a port."""
        if settings.events_port is None:
            return None
        secret = settings.events_secret.get_secret_value() if settings.events_secret else ""
        return cls(
            db,
            audit,
            refusals,
            secret=secret,
            host=settings.events_listen,
            port=settings.events_port,
        )

    @property
    def bound_port(self) -> int:
        """The port it listens on (the chosen one when started with port 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the HTTP API is not started")
        return int(self._runner.addresses[0][1])

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._answer, self._authenticate]
        )
        app.router.add_post("/events", self.post_event)
        app.router.add_post("/contacts", self.post_contact)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get(r"/calendar/{token:[A-Za-z0-9_-]{1,100}}.ics", self.calendar)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("events API listening on %s:%s", self.host, self.bound_port)

    async def stop(self) -> None:
        """Stop listening; requests in progress are finished first."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Middlewares: errors outermost, then authentication

    @web.middleware
    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error as JSON; anything unexpected as a 500 that reveals nothing."""
        try:
            return await handler(request)
        except (BadRequest, BadEvent) as error:
            return _error(400, str(error))
        except _Answer as answer:
            return _error(answer.status, answer.reason, answer.headers)
        except web.HTTPException as error:  # the router's 404 and 405
            allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            return _error(error.status, error.reason, allow)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, "internal error; the server log has the details")

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            await self._check_token(request)
        return await handler(request)

    async def _check_token(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._secret):
            return
        reason = "wrong bearer token" if token.strip() else "no bearer token"
        # Counted, and audited once a minute: anyone who can reach the port can send these.
        # The token presented is never logged or stored.
        detail = {"remote": request.remote or "", "path": request.path}
        await self.refusals.refuse(SOURCE, reason, detail)
        raise _Answer(401, reason, {"WWW-Authenticate": "Bearer"})

    # Endpoints

    async def _body(self, request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Answer(413, f"body is larger than {MAX_BODY_BYTES} bytes") from None
        return read_json(raw)

    async def post_event(self, request: web.Request) -> web.Response:
        """Store an event for a contact; 202, or 200 for an `id` seen before."""
        body = json_object(await self._body(request), "body", EVENT_FIELDS)
        if "contact" not in body or "type" not in body:
            raise BadRequest("body needs contact and type")
        ref = contact_ref(body["contact"])
        type_, data, key = check_event(body["type"], body.get("data"), body.get("id"))
        try:
            receipt = await self.intake.record(ref, type_, data, key=key, source=SOURCE)
        except NotFoundError as error:
            raise _Answer(404, str(error)) from None
        answer = {
            "event_id": receipt.event_id,
            "contact_id": receipt.contact_id,
            "duplicate": receipt.duplicate,
            "woke": receipt.woke,
        }
        return web.json_response(answer, status=200 if receipt.duplicate else 202)

    async def post_contact(self, request: web.Request) -> web.Response:
        """Create or update a lead; 201 when created, 200 when updated or unchanged."""
        body = json_object(await self._body(request), "body", LEAD_FIELDS)
        lead = lead_fields(body)
        given = sorted(name for name, value in body.items() if value is not None)
        async with self.db.transaction() as session:
            contact_id, change, woke = await self._upsert(session, lead, given)
        answer = {"contact_id": contact_id, "change": change, "woke": woke}
        return web.json_response(answer, status=201 if change == "created" else 200)

    async def _upsert(
        self, session: Tx, lead: LeadFields, given: list[str]
    ) -> tuple[int, str, list[str]]:
        """The lead, its `contact.created` event when new, and the audit record: one
        transaction, so a lead is never stored without its event."""
        try:
            change = await import_lead(session, lead)
        except RowRejected as error:
            raise _Answer(409, str(error)) from None
        contact = await find_by_ref(session, identity_ref(lead))
        assert contact is not None, "import_lead stored it"
        woke: list[str] = []
        payload: dict[str, Any] = {"contact_id": contact.id, "change": change, "fields": given}
        if change == "created":
            receipt = await self.intake.record_in(
                session,
                ContactRef("id", contact.id),
                "contact.created",
                {},
                key=f"contact.created:{contact.id}",
                source=SOURCE,
            )
            woke, payload["event_id"] = receipt.woke, receipt.event_id
        await self.audit.append(session, "lead_upserted", payload, actor=SOURCE)
        log.info("lead %s %s over HTTP", contact.id, change)
        return contact.id, change, woke

    async def calendar(self, request: web.Request) -> web.Response:
        """A staff member's calendar feed; the token in the path is its only credential, so
        an unknown one is a 404 that is counted like a wrong bearer token."""
        async with self.db.reading() as session:
            document = await feed_for_token(session, request.match_info["token"])
        if document is None:
            detail = {"remote": request.remote or "", "path": "/calendar/…"}  # not the token
            await self.refusals.refuse(SOURCE, "unknown calendar token", detail)
            raise _Answer(404, "no such calendar")
        return web.Response(
            body=document,
            content_type="text/calendar",
            charset="utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when the database answers a read within a few seconds, else 503."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS), self.db.reading() as session:
                await cursors.load(session, "healthz")  # one primary-key read, of any table
        except Exception as error:
            log.warning("health check: the database did not answer (%s)", type(error).__name__)
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok"})
