"""Reading the mailbox exactly once, over a connection we supervise ourselves.

aioimaplib does not notice a dead connection: after a BYE or a dropped socket a pending
command can wait forever. So every wait here is bounded and ends at once when the socket
closes, and any trouble ends the session: the reader reconnects with backoff, selects the
mailbox again and catches up with `UID SEARCH UID last+1:*`.

Exactly once: each message is handled and the cursor (UIDVALIDITY and the last handled UID,
in `channel_cursors`) saved in one transaction, then it is flagged \\Seen. A restart resumes
after the last saved UID. The first read of a mailbox takes the unseen messages; a changed
UIDVALIDITY (the mailbox was rebuilt) re-reads the days since the last sync and relies on
Message-ID deduplication, instead of answering the whole mailbox again. One worker reads at a
time (a lease, renewed while it waits); new mail is announced by IDLE, renewed before servers
drop it (29 minutes), or found by polling on servers without IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aioimaplib

from bot.core.backoff import Backoff
from bot.store import cursors
from bot.store.db import Database, Tx, is_transient
from bot.store.leases import Lease
from bot.store.types import utcnow
from channels.email.intake import FetchedMail, NotSentYet
from channels.host import TakeTurns, no_turns

log = logging.getLogger("channels.email")
T = TypeVar("T")
Handler = Callable[[Tx, FetchedMail], Awaitable[int | None]]
"""Stores one message inside the cursor's transaction; returns a conversation to answer."""
Unreadable = Callable[[Tx, FetchedMail, str], Awaitable[None]]
"""Sets a message aside that `Handler` failed on (the data's fault, not the database's)."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
RESYNC_MARGIN = timedelta(days=1)
SETTLE_TRIES, SETTLE_SECONDS = 20, 0.25
"""How long a bounce may wait for the send it reports to be recorded."""


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """How to reach the mailbox the bot reads."""

    host: str
    port: int
    user: str
    password: str
    tls: bool = True
    """Implicit TLS (993); False only on a trusted network (aioimaplib has no STARTTLS)."""
    mailbox: str = "INBOX"
    idle_seconds: float = 1740.0
    poll_seconds: float = 60.0
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}/{self.mailbox}"


class MailboxError(Exception):
    """The server refused a command, said BYE, or went silent: reconnect."""


class LeaseLost(Exception):
    """Another worker holds the mailbox now."""


def _check(response: Any, command: str) -> Any:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise MailboxError(f"{command} refused: {text.decode(errors='replace')[:300]}")
    return response


def _code(response: Any, name: bytes) -> int:
    for line in response.lines:
        match = re.search(rb"\[" + name + rb" (\d+)\]", bytes(line))
        if match:
            return int(match.group(1))
    return 0


def imap_date(moment: datetime) -> str:
    """A date as IMAP SEARCH wants it (English month names, whatever the locale)."""
    return f"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year}"


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]  # untyped
    """Tells the reader of every EXISTS. aioimaplib files an untagged response under the
    command waiting for it and drops one no command waits for, as it does an EXISTS that
    comes with the answer to UID STORE or UID FETCH."""

    def __init__(self, *args: Any, on_exists: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_exists = on_exists

    def _untagged_response(self, line: bytes) -> Any:
        if line.rstrip().endswith(b" EXISTS"):
            self.on_exists()
        return super()._untagged_response(line)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]  # untyped
    def __init__(self, *, on_exists: Callable[[], None], **kwargs: Any) -> None:
        self._on_exists = on_exists
        super().__init__(**kwargs)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        running = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(running, conn_lost_cb, on_exists=self._on_exists)
        self._client_task = running.create_task(
            running.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


class Connection:
    """One IMAP session, every wait bounded and cut short when the socket drops."""

    def __init__(self, config: MailboxConfig) -> None:
        self.config = config
        self.client: Any = None
        self.uidvalidity = 0
        self.uidnext = 0
        self.announced = False
        """The server announced new mail since the last search began. It announces it once, in
        the answer to whatever command is running, so mail announced while the reader catches
        up is not announced again in IDLE."""
        self._lost = asyncio.Event()

    def _on_lost(self, error: Exception | None) -> None:
        self._lost.set()

    def _on_exists(self) -> None:
        self.announced = True

    async def _call(self, awaitable: Awaitable[T], within: float | None = None) -> T:
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost},
                timeout=within or self.config.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for pending in (task, lost):
                pending.cancel()
        if task in done:
            return task.result()
        raise MailboxError("connection lost" if lost in done else "the server did not answer")

    async def open(self) -> None:
        """Connect, log in and select the mailbox."""
        c = self.config
        context = (c.ssl_context or ssl.create_default_context()) if c.tls else None
        self.client = _Client(
            host=c.host,
            port=c.port,
            timeout=c.timeout,
            conn_lost_cb=self._on_lost,
            ssl_context=context,
            on_exists=self._on_exists,
        )
        await self._call(self.client.wait_hello_from_server())
        login = await self._call(self.client.login(c.user, c.password))
        _check(login, "LOGIN (check IMAP_USER and IMAP_PASSWORD)")
        selected = _check(
            await self._call(self.client.select(aioimaplib.quoted(c.mailbox))), "SELECT"
        )
        self.uidvalidity = _code(selected, b"UIDVALIDITY")
        self.uidnext = _code(selected, b"UIDNEXT")
        if not self.uidvalidity:
            raise MailboxError(f"the server gave no UIDVALIDITY for {c.mailbox}")

    @property
    def can_idle(self) -> bool:
        return bool(self.client.has_capability("IDLE"))

    async def search(self, criteria: str) -> list[int]:
        """UIDs matching `criteria`, ascending."""
        self.announced = False  # what was announced before it is in its answer
        response = _check(
            await self._call(self.client.uid_search(criteria, charset=None)), "SEARCH"
        )
        found = {int(n) for line in response.lines[:-1] for n in bytes(line).split() if n.isdigit()}
        return sorted(found)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole message, without flagging it \\Seen; None if it is gone."""
        response = _check(
            await self._call(
                self.client.uid("fetch", str(uid), "(BODY.PEEK[])"),
                within=self.config.timeout * 10,  # aioimaplib bounds each silence itself
            ),
            "FETCH",
        )
        return next((bytes(line) for line in response.lines if isinstance(line, bytearray)), None)

    async def mark_seen(self, uid: int) -> None:
        await self._call(self.client.uid("store", str(uid), "+FLAGS.SILENT", "(\\Seen)"))

    async def idle(self, seconds: float, keepalive: Callable[[], Awaitable[None]]) -> None:
        """Wait in IDLE until new mail is announced or `seconds` pass, calling `keepalive`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        idle = await self._call(self.client.idle_start(timeout=seconds))
        while (remaining := deadline - loop.time()) > 0:
            wait = min(remaining, self.config.timeout)
            try:
                push = await self._call(self.client.wait_server_push(timeout=wait), within=wait + 5)
            except TimeoutError:
                await keepalive()
                continue
            if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                break
            lines = [bytes(line) for line in push]
            trouble = next((x for x in lines if x.startswith((b"BYE", b"NO ", b"BAD "))), None)
            if trouble is not None:  # e.g. the mailbox was deleted under us
                raise MailboxError(f"the server said {trouble.decode(errors='replace')[:200]}")
            if any(line.endswith((b"EXISTS", b"RECENT")) for line in lines):
                break
            await keepalive()
        if self.client.has_pending_idle():
            self.client.idle_done()
        _check(await self._call(idle), "IDLE")

    async def pause(self, seconds: float, keepalive: Callable[[], Awaitable[None]]) -> None:
        """Polling for servers without IDLE: wait `seconds`, then NOOP (a dead socket shows)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            wait = min(remaining, self.config.timeout)
            await self._call(asyncio.sleep(wait), within=wait + 5)
            await keepalive()
        _check(await self._call(self.client.noop()), "NOOP")

    async def close(self) -> None:
        """Log out politely if the session is healthy; drop the socket in any case."""
        client = self.client
        if client is None:
            return
        protocol = client.protocol
        idle = protocol.pending_sync_command is None and not protocol.pending_async_commands
        if idle and not self._lost.is_set() and protocol.state in ("AUTH", "SELECTED"):
            with contextlib.suppress(Exception):
                await self._call(client.logout(), within=2)
        transport = protocol.transport
        if transport is not None:
            transport.close()
        for task in [*client.tasks, *client.protocol.tasks, client._client_task]:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # seen: no "exception never retrieved" noise
        self.client = None


class MailboxReader:
    """Reads new mail into `handle`, exactly once, while holding the mailbox lease."""

    def __init__(
        self,
        config: MailboxConfig,
        db: Database,
        handle: Handler,
        notify: Callable[[int], None],
        *,
        worker_id: str,
        unreadable: Unreadable,
        lease_seconds: float = 60.0,
        backoff: Backoff | None = None,
        take_turns: TakeTurns = no_turns,
    ) -> None:
        self.config, self.db, self.handle, self.notify = config, db, handle, notify
        self.take_turns = take_turns
        self.unreadable = unreadable
        self.worker_id, self.lease_seconds = worker_id, lease_seconds
        self.backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        key = f"email:{config.address}"
        self.validity_key, self.last_uid_key = f"{key}:uidvalidity", f"{key}:last_uid"
        self.synced_key, self.lease_key = f"{key}:synced_at", f"{key}:poller"
        self.failures = 0
        self.lease = Lease(db, self.lease_key, worker_id, lease_seconds)

    async def run(self) -> None:
        """Read until cancelled; connection trouble is retried with backoff, never raised."""
        await self.lease.run(self._read)

    async def _read(self) -> None:
        try:
            await self._session()
        except LeaseLost:
            log.info("mailbox %s: another worker reads it now", self.config.address)
        except Exception as error:  # a reader that stopped would stop the whole app
            self.failures += 1
            delay = self.backoff.delay(self.failures)
            log.warning(
                "mailbox %s: %s: %s; reconnecting in %.1fs",
                self.config.address,
                type(error).__name__,
                error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        connection = Connection(self.config)
        try:
            await connection.open()
            await self._sync(connection)
            self.failures = 0
            log.info(
                "mailbox %s: reading (%s)",
                self.config.address,
                "IDLE" if connection.can_idle else f"polling every {self.config.poll_seconds}s",
            )
            while True:
                if not connection.announced:  # else it came while catching up: look again
                    await self._wait(connection)
                await self._catch_up(connection)
        finally:
            await connection.close()

    async def _wait(self, connection: Connection) -> None:
        if connection.can_idle:
            await connection.idle(self.config.idle_seconds, self._keep_lease)
        else:
            await connection.pause(self.config.poll_seconds, self._keep_lease)

    async def _keep_lease(self) -> None:
        if not await self.lease.renew_if_due():
            raise LeaseLost()

    async def _load(self, key: str) -> str | None:
        async with self.db.transaction() as session:
            return await cursors.load(session, key)

    async def _sync(self, connection: Connection) -> None:
        """Catch up from the cursor; re-read carefully after a first start or a rebuild."""
        saved = await self._load(self.validity_key)
        if saved == str(connection.uidvalidity):
            await self._catch_up(connection)
            return
        if saved is None:
            criteria = "UNSEEN"
            log.info("mailbox %s: first read; taking the unseen messages", self.config.address)
        else:
            synced = await self._load(self.synced_key)
            since = (datetime.fromisoformat(synced) if synced else utcnow()) - RESYNC_MARGIN
            criteria = f"SINCE {imap_date(since)}"
            log.warning(
                "mailbox %s: UIDVALIDITY changed (%s -> %s); re-reading mail %s, deduplicated "
                "by Message-ID",
                self.config.address,
                saved,
                connection.uidvalidity,
                criteria,
            )
        uids = await connection.search(criteria)
        top = (
            connection.uidnext - 1
            if connection.uidnext
            else max(await connection.search("ALL"), default=0)
        )
        for uid in uids:
            await self._take(connection, uid, advance=False)
        async with self.db.transaction() as session:
            await self._save(session, connection.uidvalidity, max([top, *uids]))

    async def _catch_up(self, connection: Connection) -> None:
        last = int(await self._load(self.last_uid_key) or 0)
        for uid in [u for u in await connection.search(f"UID {last + 1}:*") if u > last]:
            await self._take(connection, uid, advance=True)

    async def _take(self, connection: Connection, uid: int, *, advance: bool) -> None:
        await self._keep_lease()
        raw = await connection.fetch(uid)  # None: expunged meanwhile; the cursor moves on
        conversation = None
        for attempt in range(1, SETTLE_TRIES + 1):
            last = attempt == SETTLE_TRIES
            mail = FetchedMail(self.config.address, connection.uidvalidity, uid, raw or b"", last)
            try:
                conversation = await self._store(mail, present=raw is not None, advance=advance)
                break
            except NotSentYet as early:  # a bounce that overtook our own record of the send
                log.info("mailbox %s: %s; waiting", self.config.address, early)
                await asyncio.sleep(SETTLE_SECONDS)
        if conversation is not None:
            self.notify(conversation)
        if raw is not None:
            await connection.mark_seen(uid)

    async def _store(self, mail: FetchedMail, *, present: bool, advance: bool) -> int | None:
        """Handle the message and advance the cursor, in one transaction.

        A message that cannot be handled is set aside as a dead letter and the cursor moves
        past it; only a failure of the database itself is raised (the message is read again).
        """
        try:
            async with self.db.transaction() as session:
                conversation = await self.handle(session, mail) if present else None
                if conversation is not None:
                    await self.take_turns(session, [conversation])
                if advance:
                    await self._save(session, mail.uidvalidity, mail.uid)
            return conversation
        except NotSentYet:
            raise
        except Exception as error:
            if is_transient(error):
                raise
            log.error(
                "mailbox %s: uid %s could not be handled (%s); set aside",
                self.config.address,
                mail.uid,
                type(error).__name__,
            )
            async with self.db.transaction() as session:
                await self.unreadable(session, mail, f"{type(error).__name__}: {error}")
                if advance:
                    await self._save(session, mail.uidvalidity, mail.uid)
            return None

    async def feed(self, mail: FetchedMail) -> None:
        """Handle a message again (a dead letter someone asked to retry), cursor untouched."""
        conversation = await self._store(mail, present=True, advance=False)
        if conversation is not None:
            self.notify(conversation)

    async def _save(self, session: Tx, uidvalidity: int, last_uid: int) -> None:
        await cursors.save(session, self.validity_key, str(uidvalidity))
        await cursors.save(session, self.last_uid_key, str(last_uid))
        await cursors.save(session, self.synced_key, utcnow().isoformat())
