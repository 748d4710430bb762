"""Meeting reminders: a built-in proactive job that every scheduler tick runs.

A booked meeting that starts within MEETING_REMINDER_BEFORE gets one reminder to the contact,
in their latest conversation, queued as an automatic outbox item: the proactive rules (opt-out,
staff took over, weekly cap, breaker, quiet hours) decide at send time whether and when it
goes, like any scheduled message. Its key is the meeting's UID and SEQUENCE, and the meeting
records the SEQUENCE it was reminded for, so a tick run twice, two workers at once or a
restart remind nobody twice; a moved meeting (the next SEQUENCE) is reminded again, and the
reminder of its old time, if it is still waiting, is cancelled with the move. A meeting booked
or moved closer to its start than the reminder time is not reminded: its confirmation has just
gone out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.desk.meetings import queue_reminder
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.meetings import reminders_due
from bot.store.types import utcnow

log = logging.getLogger("scheduler.reminders")
ACTOR = "scheduler:meeting-reminders"


class MeetingReminders:
    """Queues the reminders that are due; safe to run in several workers at once."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        before: timedelta | None,
        team_zone: ZoneInfo,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.audit, self.before = db, audit, before
        self.team_zone, self.clock = team_zone, clock

    async def queue_due(self) -> int:
        """Queue every reminder that is due now; returns how many were queued."""
        if self.before is None:
            return 0
        queued = 0
        async with self.db.transaction() as session:
            for meeting in await reminders_due(session, self.clock(), self.before):
                problem = await queue_reminder(
                    session, meeting, team_zone=self.team_zone, actor=ACTOR
                )
                queued += problem is None
                await self.audit.append(
                    session,
                    "meeting_reminder",
                    {
                        "meeting_id": meeting.id,
                        "sequence": meeting.sequence,
                        "queued": problem is None,
                        "reason": problem,
                    },
                    actor=ACTOR,
                )
                if problem is not None:
                    log.info("meeting %s: no reminder (%s)", meeting.id, problem)
        return queued
