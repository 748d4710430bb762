"""The console channel: a terminal conversation with an agent through the real engine.

Each line typed (or piped) is an inbound message from the chosen contact; the agent's replies
come back through the outbox like any channel's. On a terminal it prompts; from a pipe it reads
line by line, waits for each answer, and exits at end of input.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TextIO

from bot.store.contacts import Identity
from bot.store.inbox import InboundMessage, record_inbound
from bot.store.models import OutboxItem
from channels.base import Channel, DeliveryResult, Sent
from channels.host import Host

CHANNEL = "console"


class ConsoleChannel(Channel):
    """Reads the contact's lines from `stdin`, prints the agent's replies to `stdout`."""

    name = CHANNEL

    def __init__(
        self,
        app: Host,
        contact: str,
        *,
        agent: str | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.app, self.contact, self.agent = app, contact, agent
        self.stdin, self.stdout = stdin or sys.stdin, stdout or sys.stdout
        self.interactive = self.stdin.isatty()
        self.session_id = uuid.uuid4().hex[:12]
        self._count = 0

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        label = "bot" if item.author != "staff" else "staff"
        self.stdout.write(f"{label}> {item.text}\n")
        self.stdout.flush()
        return Sent(f"{self.session_id}:out:{item.id}")

    async def run(self) -> None:
        """Converse until end of input."""
        if self.interactive:
            self.stdout.write(
                f"Chatting as {self.contact} (Ctrl-D to quit). Provider: "
                f"{self.app.settings.llm_provider}.\n"
            )
        while True:
            line = await self._read_line()
            if line is None:
                return
            if line.strip():
                await self.say(line.strip())

    async def say(self, text: str) -> None:
        """Send one message as the contact and wait until the agent's answer is delivered."""
        self._count += 1
        inbound = InboundMessage(
            identity=Identity(channel=CHANNEL, address=self.contact, name=self.contact),
            external_id=f"{self.session_id}:{self._count}",
            text=text,
        )
        async with self.app.db.transaction() as session:
            recorded = await record_inbound(session, inbound)
            if recorded is not None:
                if self.agent:
                    recorded.conversation.current_agent = self.agent
                await self.app.take_turns(session, [recorded.conversation.id])
        if recorded is not None:
            self.app.notify(recorded.conversation.id)
        await self.app.settle()

    async def _read_line(self) -> str | None:
        if self.interactive:
            self.stdout.write("you> ")
            self.stdout.flush()
        line = await asyncio.to_thread(self.stdin.readline)
        return line if line else None
