"""Staff posts when no staff group is configured: written to the log, marked delivered.

Keeps one code path for handoffs whatever the deployment: the console and single-channel
set-ups still record every summary and alert, and `crmbot audit` shows them.
"""

from __future__ import annotations

import logging

from bot.desk.staff import STAFF_CHANNEL
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Sent

log = logging.getLogger("channels.staff")


class StaffLogChannel(Channel):
    name = STAFF_CHANNEL

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        log.info(
            "for staff about contact %s (%s):\n%s",
            item.contact_id,
            item.meta.get("kind", "post"),
            item.text,
        )
        return Sent(None)
