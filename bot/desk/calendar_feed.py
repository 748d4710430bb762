"""A staff member's private calendar feed: `GET /calendar/TOKEN.ics`.

What it holds, decided once here:

- the member's own meetings (the deal's or contact's owner is their name, in any case) and
  the team's shared calendar (meetings owned by `team`, which any member may take): someone
  who subscribes sees everything they might have to attend;
- from `HISTORY` ago on, so past weeks stay visible but the feed does not grow for ever;
- cancelled meetings stay in, with `STATUS:CANCELLED` and their last SEQUENCE, so a calendar
  that had the meeting marks it cancelled instead of keeping a stale copy until it notices
  the event is gone.

The token is the only credential: whoever has the URL reads the feed, so it is a long random
secret (`crmbot staff calendar NAME --rotate` replaces it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core import ics
from bot.desk.meeting_notices import TEAM_OWNER, event_of
from bot.store.contacts import get_contact
from bot.store.db import Tx
from bot.store.meetings import member_by_token, of_owners
from bot.store.types import utcnow

HISTORY = timedelta(days=90)


async def feed_for_token(session: Tx, token: str, now: datetime | None = None) -> bytes | None:
    """The feed that `token` opens, or None for a token nobody has."""
    member = await member_by_token(session, token)
    if member is None:
        return None
    now = now or utcnow()
    events = []
    for meeting in await of_owners(session, [member.name, TEAM_OWNER], since=now - HISTORY):
        contact = await get_contact(session, meeting.contact_id)
        own = meeting.owner is not None and meeting.owner.lower() == member.name.lower()
        organizer = (member.name, member.email) if own else ("", None)
        events.append(event_of(meeting, contact, organizer, for_staff=True))
    return ics.feed(events, name=f"crmbot: {member.name}", now=now)
