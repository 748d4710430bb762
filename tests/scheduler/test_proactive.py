"""The agents that act with no message, and the rules every automatic message obeys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.definition import TEMPLATES_DIR, load_definition_file
from agents.messages import ModelRequest, ModelTurn, ToolResult
from agents.providers.offline import OfflineProvider
from bot.store import proactive as proactive_store
from bot.store.leads import ContactRef
from bot.store.models import AuditEvent, Contact, OutboxItem, Switch, Wakeup
from tests.scheduler.conftest import Proactive, at
from tests.support.models import FunctionModel, turn

OFFLINE = OfflineProvider()


async def _chatty(request: ModelRequest) -> ModelTurn:
    """Proactive runs and tool results as offline; an inbound message gets a friendly answer."""
    last = request.messages[-1] if request.messages else None
    if request.agent_hints.get("task") is not None or isinstance(last, ToolResult):
        return await OFFLINE.complete(request)
    return turn("Glad you wrote! Tell me what you are stuck on.")


async def _trial_contact(proactive: Proactive, name: str) -> int:
    return await proactive.lead(name, f"{name.lower()}@example.com", tags=("trial",))


async def _install(proactive: Proactive, template: str, **changes: Any) -> None:
    definition = load_definition_file(TEMPLATES_DIR / f"{template}.yaml")
    await proactive.add_agent({**definition.model_dump(mode="json"), **changes})


async def _automatic_by_recipient(proactive: Proactive) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in await proactive.automatic():
        if item.status == "sent":
            found.setdefault(item.recipient, []).append(item.text)
    return found


async def test_the_onboarding_sequence_over_a_week_sends_exactly_the_expected_messages(
    proactive: Proactive,
) -> None:
    proactive.harness.use_model(FunctionModel(_chatty))
    await _install(proactive, "trial-onboarding")
    quiet = await _trial_contact(proactive, "Quinn")
    replier = await _trial_contact(proactive, "Rita")
    active = await _trial_contact(proactive, "Alex")
    for contact in (quiet, replier, active):
        await proactive.events.record(ContactRef("id", contact), "trial.started", key=f"t{contact}")
    for day in range(3):  # Alex uses the product every day
        proactive.clock.set(at(day, 12))
        await proactive.events.record(ContactRef("id", active), "active_day")

    replied = False
    for hour in range(1, 7 * 24 + 1):
        proactive.clock.set(at(0, 9) + timedelta(hours=hour))
        await proactive.tick()
        if not replied and proactive.clock.now >= at(1, 12):
            await proactive.reply(replier, "Thanks, I am interested but stuck on the import.")
            replied = True

    sent = await _automatic_by_recipient(proactive)
    nudge = "you started your trial yesterday"
    assert list(sent) == ["quinn@example.com", "rita@example.com"], sent
    assert len(sent["quinn@example.com"]) == 1 and nudge in sent["quinn@example.com"][0]
    assert "Hi Quinn" in sent["quinn@example.com"][0]
    assert len(sent["rita@example.com"]) == 2
    assert nudge in sent["rita@example.com"][0]
    assert "check-in call" in sent["rita@example.com"][1]
    skipped = {
        (w.contact_id, w.result) for w in await proactive.rows(Wakeup, Wakeup.status == "skipped")
    }
    assert (active, "condition not met: 3 active_day event(s), more than 1") in skipped
    assert (quiet, "condition not met: the contact has not replied") in skipped


async def test_stop_ends_every_later_automatic_message_but_replies_go_on(
    proactive: Proactive,
) -> None:
    proactive.harness.use_model(FunctionModel(_chatty))
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {"type": "inbound"},
            {"type": "event", "event": "ping", "message": "Hi {first_name}, a quick check-in."},
        ],
    )
    contact = await _trial_contact(proactive, "Sam")
    await proactive.events.record(ContactRef("id", contact), "ping")
    await proactive.tick()
    assert len((await _automatic_by_recipient(proactive))["sam@example.com"]) == 1

    proactive.clock.advance(hours=1)
    await proactive.reply(contact, "STOP")
    [row] = await proactive.rows(Contact, Contact.id == contact)
    assert row.opted_out_at is not None
    assert await proactive.rows(AuditEvent, AuditEvent.kind == "opted_out")
    staff = [text for _, text in proactive.harness.staff.delivered]
    await proactive.harness.app.flush_outbox()
    staff = [text for _, text in proactive.harness.staff.delivered]
    assert any("no more automatic messages" in text for text in staff)
    # The "stop" itself was answered: inbound replies go on.
    replies = await proactive.rows(
        OutboxItem, OutboxItem.automatic.is_(False), OutboxItem.channel == "email"
    )
    assert replies

    for _ in range(3):
        proactive.clock.advance(days=1)
        await proactive.events.record(ContactRef("id", contact), "ping")
        await proactive.tick()
    assert len((await _automatic_by_recipient(proactive))["sam@example.com"]) == 1
    skipped = await proactive.rows(Wakeup, Wakeup.status == "skipped")
    assert {w.result for w in skipped} == {"the contact opted out of automatic messages"}


async def test_an_automatic_message_queued_before_stop_is_cancelled_at_send_time(
    proactive: Proactive,
) -> None:
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {"type": "event", "event": "ping", "message": "Hi {first_name}!"},
        ],
    )
    contact = await _trial_contact(proactive, "Sam")
    await proactive.events.record(ContactRef("id", contact), "ping")
    await proactive.scheduler.tick()  # the run queued its message; nothing delivered yet
    [item] = await proactive.automatic()
    assert item.status == "pending"
    async with proactive.db.transaction() as session:
        await proactive_store.opt_out(session, contact, proactive.clock())
    while await proactive.mailer.deliver_due():
        pass
    [item] = await proactive.automatic()
    assert item.status == "cancelled"
    assert proactive.email.delivered == []


async def test_quiet_hours_delay_a_message_to_the_morning_and_do_not_drop_it(
    proactive: Proactive,
) -> None:
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {
                "type": "event",
                "event": "ping",
                "after": "12h",
                "message": "Good morning {first_name}",
            },
        ],
    )
    contact = await proactive.lead("Kim", "kim@example.com", tags=("trial",), timezone="Asia/Tokyo")
    proactive.clock.set(at(0, 9))  # 18:00 in Tokyo; due 12 hours later, 06:00 in Tokyo
    await proactive.events.record(ContactRef("id", contact), "ping")
    proactive.clock.set(at(0, 21, 0, 1))
    await proactive.tick()
    assert proactive.email.delivered == []
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.status == "pending" and wakeup.result == "quiet hours"
    assert wakeup.due_at == at(0, 23)  # 08:00 in Tokyo
    proactive.clock.set(at(0, 23, 0, 1))
    await proactive.tick()
    assert proactive.email.delivered == [("kim@example.com", "Good morning Kim")]


async def test_the_send_time_check_holds_a_queued_message_through_the_night(
    proactive: Proactive,
) -> None:
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {"type": "event", "event": "ping", "message": "Hello {first_name}"},
        ],
    )
    contact = await _trial_contact(proactive, "Lou")
    proactive.clock.set(at(0, 20, 59))
    await proactive.events.record(ContactRef("id", contact), "ping")
    await proactive.scheduler.tick()  # queued at 20:59 ...
    proactive.clock.set(at(0, 21, 30))  # ... the worker gets to it in quiet hours
    while await proactive.mailer.deliver_due():
        pass
    [item] = await proactive.automatic()
    assert item.status == "pending" and item.next_attempt_at == at(1, 8)
    proactive.clock.set(at(1, 8, 0, 1))
    while await proactive.mailer.deliver_due():
        pass
    assert proactive.email.delivered == [("lou@example.com", "Hello Lou")]


async def test_the_weekly_cap_stops_automatic_messages_to_a_contact(proactive: Proactive) -> None:
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {"type": "event", "event": "ping", "message": "Ping {first_name}"},
        ],
    )
    contact = await _trial_contact(proactive, "Max")
    for _ in range(5):
        proactive.clock.advance(hours=2)
        await proactive.events.record(ContactRef("id", contact), "ping")
        await proactive.tick()
    assert len(proactive.email.delivered) == 3  # PROACTIVE_MAX_PER_WEEK
    skipped = await proactive.rows(Wakeup, Wakeup.status == "skipped")
    assert {w.result for w in skipped} == {"the weekly cap of 3 is reached"}


async def test_the_breaker_trips_holds_everything_and_waits_for_a_person(
    proactive: Proactive,
) -> None:
    proactive.harness.app.rules.daily_limit = 2
    await _install(
        proactive,
        "trial-onboarding",
        triggers=[
            {"type": "event", "event": "ping", "message": "Hi {first_name}"},
        ],
    )
    people = [await _trial_contact(proactive, f"P{n}") for n in range(4)]
    for contact in people:
        await proactive.events.record(ContactRef("id", contact), "ping")
    await proactive.tick()
    assert len(proactive.email.delivered) == 2
    [switch] = await proactive.rows(Switch)
    assert switch.tripped and "limit of 2" in switch.reason
    await proactive.harness.app.flush_outbox()
    assert any("paused" in text for _, text in proactive.harness.staff.delivered)
    assert await proactive.rows(AuditEvent, AuditEvent.kind == "breaker_tripped")

    for _ in range(3):  # days later it still holds: only a person resumes it
        proactive.clock.advance(days=1)
        await proactive.tick()
    assert len(proactive.email.delivered) == 2
    async with proactive.db.transaction() as session:
        assert await proactive_store.reset_breaker(session, "admin:test", proactive.clock())
    proactive.harness.app.rules.daily_limit = 100
    await proactive.tick()
    assert len(proactive.email.delivered) == 4
