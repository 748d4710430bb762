"""A trigger's `when`, checked in code when its run is due (the model never decides it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.definition import Conditions
from bot.store.db import Tx
from bot.store.deals import get_deal
from bot.store.events import count_events
from bot.store.proactive import last_message_at, wrote_since


async def unmet(
    session: Tx,
    when: Conditions,
    *,
    contact_id: int,
    since: datetime,
    now: datetime,
    deal_id: int | None = None,
) -> str | None:
    """Why the contact does not qualify now, or None if every condition holds."""
    if when.replied is not None:
        wrote = await wrote_since(session, contact_id, since)
        if wrote != when.replied:
            return "the contact has written since" if wrote else "the contact has not replied"
    if when.inactive_days is not None:
        reason = await _active(session, when.inactive_days, contact_id, deal_id, now)
        if reason is not None:
            return reason
    counted = await count_events(session, contact_id, [*when.min_events, *when.max_events], since)
    for kind, least in when.min_events.items():
        if counted[kind] < least:
            return f"{counted[kind]} {kind} event(s), fewer than {least}"
    for kind, most in when.max_events.items():
        if counted[kind] > most:
            return f"{counted[kind]} {kind} event(s), more than {most}"
    return None


async def _active(
    session: Tx, days: int, contact_id: int, deal_id: int | None, now: datetime
) -> str | None:
    cutoff = now - timedelta(days=days)
    last = await last_message_at(session, contact_id)
    if last is not None and last > cutoff:
        return f"a message {(now - last).days} day(s) ago"
    if deal_id is not None:
        deal = await get_deal(session, deal_id)
        if deal is not None and deal.last_activity_at > cutoff:
            return f"deal activity {(now - deal.last_activity_at).days} day(s) ago"
    return None
