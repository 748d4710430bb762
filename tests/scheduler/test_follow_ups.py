"""One follow-up to a prospect who went quiet mid-qualification, then nothing."""

from __future__ import annotations

from datetime import timedelta

from agents.definition import TEMPLATES_DIR, load_definition_file
from bot.store.conversations import set_state
from bot.store.models import OutboxItem, Wakeup
from tests.scheduler.conftest import Proactive


async def _qualifying(proactive: Proactive) -> None:
    definition = load_definition_file(TEMPLATES_DIR / "lead-qualifying.yaml")
    await proactive.add_agent(definition.model_dump(mode="json"))


async def _sent_automatic(proactive: Proactive) -> list[str]:
    items = await proactive.rows(
        OutboxItem, OutboxItem.automatic.is_(True), OutboxItem.status == "sent"
    )
    return [item.text for item in items]


async def test_a_quiet_prospect_gets_one_follow_up_then_nothing(proactive: Proactive) -> None:
    await _qualifying(proactive)
    contact = await proactive.lead("Pat Doe", "pat@example.com")
    await proactive.reply(contact, "Hello, I saw your site")  # the agent asks its first question
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.cancel_on_reply
    assert wakeup.due_at == proactive.clock.now + timedelta(days=2)  # the template's `after`
    proactive.clock.advance(days=1)
    await proactive.tick()
    assert await _sent_automatic(proactive) == []
    proactive.clock.advance(days=1, minutes=1)
    await proactive.tick()
    [follow_up] = await _sent_automatic(proactive)
    assert follow_up.startswith("Hi Pat, just checking in")
    for _ in range(5):  # and never again while they stay quiet
        proactive.clock.advance(days=2)
        await proactive.tick()
    assert len(await _sent_automatic(proactive)) == 1


async def test_any_message_from_the_prospect_cancels_the_pending_follow_up(
    proactive: Proactive,
) -> None:
    await _qualifying(proactive)
    contact = await proactive.lead("Pat Doe", "pat@example.com")
    await proactive.reply(contact, "Hello, I saw your site")
    proactive.clock.advance(hours=5)
    await proactive.reply(contact, "We want help with support tickets")
    first, second = await proactive.rows(Wakeup)
    assert first.status == "cancelled" and first.result == "the contact wrote"
    assert second.status == "pending"  # the newest question earns its own single follow-up
    proactive.clock.advance(days=2, hours=1)
    await proactive.tick()
    assert len(await _sent_automatic(proactive)) == 1


async def test_no_follow_up_reaches_a_conversation_staff_took_over(proactive: Proactive) -> None:
    await _qualifying(proactive)
    contact = await proactive.lead("Pat Doe", "pat@example.com")
    conversation_id = await proactive.reply(contact, "Hello, I saw your site")
    async with proactive.db.transaction() as session:
        await set_state(session, conversation_id, "handed_off")
    proactive.clock.advance(days=3)
    await proactive.tick()
    assert await _sent_automatic(proactive) == []
    [wakeup] = await proactive.rows(Wakeup)
    assert wakeup.status == "skipped" and wakeup.result == "the conversation is handed_off"


async def test_staff_taking_over_after_the_run_stops_its_queued_message(
    proactive: Proactive,
) -> None:
    await _qualifying(proactive)
    contact = await proactive.lead("Pat Doe", "pat@example.com")
    conversation_id = await proactive.reply(contact, "Hello, I saw your site")
    proactive.clock.advance(days=2, minutes=1)
    await proactive.scheduler.tick()  # the follow-up is queued, not yet delivered
    async with proactive.db.transaction() as session:
        await set_state(session, conversation_id, "handed_off")
    while await proactive.mailer.deliver_due():
        pass
    [item] = await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True))
    assert item.status == "cancelled" and item.last_error == "the conversation is handed_off"
