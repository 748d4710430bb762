"""Who a proactive run is for, and where it would reach them.

A proactive run goes to the contact's conversation as staff see it (the open one, else the
most recent: `bot.store.handoffs.latest_conversation`), where the rules then decide. With
none, it opens one on email when we have their address. Never on Telegram: a bot can only
answer people who wrote to it, and then they have a conversation already.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from agents.definition import AgentDefinition, ScheduleTrigger
from agents.router import matches
from bot.store.contacts import address_on, get_contact
from bot.store.db import Database, Tx
from bot.store.deals import open_deal
from bot.store.handoffs import latest_conversation
from bot.store.hygiene import StalePolicy, stale_deals_page
from bot.store.models import Contact, Conversation
from bot.store.proactive import contacts_page

FIRST_CONTACT_CHANNELS = ("email",)
"""Where we may write first. Not Telegram: a bot can only answer people who wrote to it, so a
Telegram contact is reachable through the conversation they started."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a proactive message to a contact would go."""

    channel: str | None
    """None: nowhere (no address on any channel)."""
    conversation: Conversation | None
    """The conversation it continues; None: a new one would be opened on `channel`."""


async def target_for(session: Tx, contact: Contact) -> Target:
    latest = await latest_conversation(session, contact.id)
    if latest is not None:
        return Target(latest.channel, latest)
    for channel in FIRST_CONTACT_CHANNELS:
        if await address_on(session, contact.id, channel) is not None:
            return Target(channel, None)
    return Target(None, None)


async def agent_takes(session: Tx, agent: AgentDefinition, contact: Contact) -> bool:
    """The agent's routing rule accepts this contact where a proactive run would reach them."""
    target = await target_for(session, contact)
    deal = await open_deal(session, contact.id)
    return matches(agent.match, target.channel, contact, deal.stage if deal else None)


Chosen = tuple[int, int | None]
"""(contact id, deal id or None) a firing would run for."""


async def chosen_pages(
    db: Database,
    agent: AgentDefinition,
    trigger: ScheduleTrigger,
    now: datetime,
    page_size: int = 500,
) -> AsyncIterator[list[Chosen]]:
    """What one firing of `trigger` runs for, a page per short read: every reachable contact
    the agent's `match` accepts (`for_each: contact`), or every open deal, quiet for
    `when.inactive_days` if given, of such a contact (`for_each: deal`)."""
    after = 0
    while True:
        async with db.reading() as session:
            if trigger.for_each == "deal":
                page, chosen = await _deal_page(session, agent, trigger, now, after, page_size)
            else:
                contacts = await contacts_page(session, after_id=after, page_size=page_size)
                page = [c.id for c in contacts]
                chosen = [(c.id, None) for c in contacts if await agent_takes(session, agent, c)]
        yield chosen
        if len(page) < page_size:
            return
        after = page[-1]


async def _deal_page(
    session: Tx,
    agent: AgentDefinition,
    trigger: ScheduleTrigger,
    now: datetime,
    after: int,
    page_size: int,
) -> tuple[list[int], list[Chosen]]:
    # With no `when.inactive_days` every open deal is taken (quiet for 0 days or more).
    days = trigger.when.inactive_days
    policy = StalePolicy(default_days=days if days is not None else 0)
    deals = await stale_deals_page(session, policy, now=now, after_id=after, page_size=page_size)
    chosen: list[Chosen] = []
    for deal in deals:
        person = await get_contact(session, deal.contact_id)
        if person.opted_out_at is None and await agent_takes(session, agent, person):
            chosen.append((deal.contact_id, deal.id))
    return [d.id for d in deals], chosen
