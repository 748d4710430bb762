"""App wiring: build the components once, run the channel tasks, stop cleanly.

Like aiogram's `start_polling`: start-up (migrations), run every task, wait for the first to
end or for SIGINT/SIGTERM, then shut down in order: runs in progress finish, the outbox gets a
last pass, and every resource is closed in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from agents import catalog
from agents.definition import TEMPLATES_DIR
from agents.providers.pool import ProviderPool
from agents.runner import AgentRunner
from bot.app.admin import AdminCommands
from bot.app.delivery import OutboxWorker
from bot.app.dispatcher import Dispatcher
from bot.app.http_api import HttpApi
from bot.app.jobs_desk import JobsDesk
from bot.app.supervise import Start, Supervision, supervise
from bot.core.backoff import Backoff
from bot.core.redact import Redactor
from bot.core.settings import Settings
from bot.store import outbox
from bot.store.audit import SEAL_EVERY_SECONDS, AuditLog, AuditSealer
from bot.store.db import Database, Tx
from bot.store.leases import Heartbeat
from bot.store.refusals import Refusals
from channels.base import Channel
from channels.host import Activity
from scheduler.service import Scheduler

log = logging.getLogger("bot.app")
DIRECT_CHANNEL = "telegram"
"""The channel staff members get private messages on (their stale-deal lists)."""


class App:
    """The wired components of one crmbot process."""

    def __init__(
        self, settings: Settings, *, quiet_seconds: float | None = None, seed_agents: bool = True
    ) -> None:
        self.settings, self.seed_agents = settings, seed_agents
        self.redactor = Redactor(settings.secrets())
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.audit = AuditLog(self.redactor)
        self.refusals = Refusals(self.db, self.audit)
        self.providers = ProviderPool(settings)
        self.runner = AgentRunner(self.db, self.audit, settings, self.providers)
        self.rules = self.runner.rules
        self.scheduler = Scheduler(self.db, self.audit, self.runner, self.rules, settings)
        self.dispatcher = Dispatcher(
            self.db,
            self.runner,
            worker_id=settings.worker_id,
            lease_seconds=settings.lease_seconds,
            max_concurrent_runs=settings.max_concurrent_runs,
            quiet_seconds=settings.coalesce_seconds if quiet_seconds is None else quiet_seconds,
            after_run=self.wake_outbox,
            activity=self.activity,
        )
        self.heartbeat = Heartbeat(self.db, settings.worker_id, settings.lease_seconds)
        sealer = AuditSealer(
            self.db, settings.worker_id, settings.lease_seconds, SEAL_EVERY_SECONDS
        )
        self.background: dict[str, Start] = {
            "audit-sealer": sealer.run_forever,
            "scheduler": self.scheduler.run_forever,
        }
        """Long-running jobs besides the channels (the audit sealer, dead-letter retries);
        supervised like the channels."""
        self.outbox_workers: dict[str, OutboxWorker] = {}
        self.activity_signals: list[Activity] = []
        self.admins = AdminCommands(self.db, self.audit, self.runner)
        self.jobs = JobsDesk(self.db, self.audit, self.scheduler)
        self.admins.register_alone(
            "jobs",
            lambda admin, text: self.jobs.command(admin.actor, text),
            "Scheduled jobs: list, run NAME, pause NAME, resume [NAME], preview [HOURS]",
        )

    async def start(self) -> None:
        """Apply migrations; on a database with no agents, store the shipped ones.

        Seeding happens only while the catalog is empty, so agents edited or disabled later
        are never overwritten (`crmbot agent import --keep-existing` keeps them too).
        """
        await self.db.migrate()
        if self.seed_agents and await catalog.seed_if_empty(self.db):
            log.info("first start: stored the shipped agents from %s", TEMPLATES_DIR)

    def add_channel(self, channel: Channel, *, retry: Backoff | None = None) -> None:
        outbox.limit_text(channel.name, channel.text_limit)
        if channel.name == DIRECT_CHANNEL:
            self.scheduler.direct_channel = channel.name  # owners get their lists in private
        self.outbox_workers[channel.name] = OutboxWorker(
            self.db,
            self.audit,
            channel,
            worker_id=self.settings.worker_id,
            lease_seconds=self.settings.lease_seconds,
            retry=retry,
            rules=self.rules,
        )

    def add_background(self, name: str, start: Start) -> None:
        self.background[name] = start

    def add_activity(self, activity: Activity) -> None:
        self.activity_signals.append(activity)

    async def take_turns(self, session: Tx, conversation_ids: list[int]) -> None:
        await self.dispatcher.take_turns(session, conversation_ids)

    def notify(self, conversation_id: int) -> None:
        self.dispatcher.notify(conversation_id)

    async def settle(self) -> None:
        await self.dispatcher.idle()
        await self.flush_outbox()

    @contextlib.asynccontextmanager
    async def activity(self, conversation_id: int) -> AsyncIterator[None]:
        """While a run works on a conversation, let channels show it (Telegram's "typing")."""
        async with contextlib.AsyncExitStack() as stack:
            for signal_activity in self.activity_signals:
                await stack.enter_async_context(signal_activity(conversation_id))
            yield

    async def record_restart(self, name: str, error: str, failures: int, delay: float) -> None:
        async with self.db.transaction() as session:
            await self.audit.append(
                session,
                "channel_restarted",
                {"task": name, "error": error[:500], "failures": failures, "delay_s": delay},
                actor="bot.app",
            )

    def wake_outbox(self) -> None:
        for worker in self.outbox_workers.values():
            worker.wake()

    async def flush_outbox(self) -> None:
        """Deliver everything that is due now (used at shutdown and by the console)."""
        for worker in self.outbox_workers.values():
            while await worker.deliver_due():
                pass

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
        with contextlib.suppress(Exception):
            await self.flush_outbox()
        await self.providers.aclose()
        await self.refusals.aclose()
        await self.db.dispose()


async def serve(app: App, channels: list[Start], supervision: Supervision | None = None) -> None:
    """Run the channels and background workers until one channel ends or a signal arrives.

    Each channel and background job is restarted in the process when it fails; one that keeps
    failing raises `ChannelFailed` from here, after the same clean shutdown, so the process
    ends with a non-zero status.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    def supervised(name: str, start: Start) -> asyncio.Task[None]:
        return asyncio.create_task(
            supervise(name, start, app.record_restart, supervision), name=name
        )

    tasks = [supervised(getattr(start, "__qualname__", "channel"), start) for start in channels] + [
        supervised(name, start) for name, start in app.background.items()
    ]
    sweeper = asyncio.create_task(app.dispatcher.run_sweeper(), name="sweeper")
    heartbeat = asyncio.create_task(app.heartbeat.run_forever(), name="lease-heartbeat")
    deliveries = [
        asyncio.create_task(w.run_forever(), name=f"outbox-{name}")
        for name, w in app.outbox_workers.items()
    ]
    stopper = asyncio.create_task(stop.wait(), name="signals")
    failed: BaseException | None = None
    api = HttpApi.from_settings(app.db, app.audit, app.refusals, app.settings)
    try:
        if api is not None:
            await api.start()
            log.info("events API on %s:%s", app.settings.events_listen, api.bound_port)
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        failed = next((t.exception() for t in done if t is not stopper and t.exception()), None)
        if stop.is_set():
            log.info("stop requested; finishing runs in progress")
    finally:
        if api is not None:
            await api.stop()  # no new events while the rest winds down
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        await app.dispatcher.idle()
        sweeper.cancel()
        # Never cancel a delivery mid-send: that would leave its outcome unknown.
        for worker in app.outbox_workers.values():
            worker.stop()
        await asyncio.gather(sweeper, *deliveries, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    if failed is not None:
        raise failed
