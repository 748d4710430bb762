"""Outbox delivery by email: each item becomes a reply in the contact's thread."""

from __future__ import annotations

import asyncio
import logging
from email import policy

from bot.store.db import Database
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Failed, Sent
from channels.email.compose import Sender, compose, message_id_for, thread_of
from channels.email.loops import AUTOMATIC_AUTHORS, CHANNEL, AutoReplyCap
from channels.email.smtp import SmtpTransport

log = logging.getLogger("channels.email")
MAX_CONNECTIONS = 4
"""SMTP sessions open at once; more would only queue at the server."""


class EmailChannel(Channel):
    """Delivers outbox items as emails; the Message-ID is the item's `external_id`."""

    name = CHANNEL
    max_in_flight = MAX_CONNECTIONS

    def __init__(
        self, db: Database, transport: SmtpTransport, sender: Sender, cap: AutoReplyCap
    ) -> None:
        self.db, self.transport, self.sender, self.cap = db, transport, sender, cap
        self._connections = asyncio.Semaphore(MAX_CONNECTIONS)

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        async with self.db.reading() as session:  # reads only: no commit on the way out
            refusal = await self.cap.refusal(session, item)
            thread = await thread_of(session, item.conversation_id)
        if refusal is not None:
            log.warning("outbox %s to contact %s held back: %s", item.id, item.contact_id, refusal)
            return Failed(refusal)
        automatic = item.author in AUTOMATIC_AUTHORS
        try:
            message = compose(item, thread, self.sender, automatic=automatic)
            data = message.as_bytes(policy=policy.SMTP)
        except (ValueError, UnicodeError) as error:  # e.g. an address no header can carry
            return Failed(f"cannot compose the email: {error}")
        async with self._connections:
            result = await self.transport.send(self.sender.address, item.recipient, data)
        if isinstance(result, Sent):
            return Sent(message_id_for(item, self.sender.domain))
        return result
