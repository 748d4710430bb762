"""Several `crmbot run` processes on one PostgreSQL database, against the fake Bot API.

What `bench/workers.py` and `tests/app/test_workers.py` share:

- a scratch database on the server a URL names, created for one run and dropped after it;
- the agents the load talks to: `bench-steps` asks twelve numbered questions in turn, so the
  n-th reply a chat gets must be question n (a reply sent twice, or out of order, shows in the
  text), and `bench-check-in`, a job firing every minute for the contacts tagged `scheduled`;
- the processes, in webhook mode (each worker serves the webhook on a port of its own, and
  the load posts each update to the next worker in turn, as a load balancer in front of them
  would) or in polling mode (every worker competes for the poller lease; one polls).

Set-up goes through the real commands, once, before any worker starts: `crmbot db upgrade`
(what `deploy/crmbot-migrate.service` does), `crmbot agent import`, `crmbot jobs list`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlalchemy import update

from bot.store.contacts import Identity, resolve_contact
from bot.store.conversations import open_conversation
from bot.store.db import Database
from bot.store.models import Job
from bot.store.types import utcnow
from tests.support.fake_telegram import FakeTelegram

CRMBOT = str(Path(sys.executable).parent / "crmbot")
STEPS_AGENT = "bench-steps"
CHECK_IN_AGENT = "bench-check-in"
QUESTIONS = 12
FIRST_CHAT = 30_000
FIRST_SCHEDULED = 90_000
STAFF_CHAT = -1001234567890
WEBHOOK_PATH = "/telegram"
WEBHOOK_URL = f"https://crmbot.example{WEBHOOK_PATH}"
"""What every worker registers with setWebhook: the public address of the load balancer."""
WEBHOOK_SECRET = "fleet-secret"
CHECK_IN = "Scheduled check-in for "
SCHEDULED_TAG = "scheduled"
Mode = Literal["webhook", "polling"]


def ask(number: int) -> str:
    return f"Question {number} of {QUESTIONS}: and what else?"


def agent_definitions() -> list[dict[str, Any]]:
    steps = {
        "name": STEPS_AGENT,
        "description": "Asks numbered questions in turn, so replies show their order.",
        "goal": "Ask each numbered question in turn and record every answer.",
        "persona": "A benchmark assistant.",
        "tools": ["send_message", "record_answer"],
        "max_steps": 4,
        "triggers": [{"type": "inbound"}],
        "questions": [{"key": f"q{n}", "ask": ask(n)} for n in range(1, QUESTIONS + 1)],
    }
    check_in = {
        "name": CHECK_IN_AGENT,
        "description": "A check-in every minute for the scheduled contacts.",
        "goal": "Send the scheduled check-in message and nothing else.",
        "persona": "A benchmark assistant.",
        "tools": ["send_message"],
        "max_steps": 2,
        "triggers": [
            {
                "type": "schedule",
                "cron": "* * * * *",
                "for_each": "contact",
                "message": CHECK_IN + "{first_name}",
            }
        ],
        "match": {"tags": [SCHEDULED_TAG]},
    }
    return [steps, check_in]


# --- the database -------------------------------------------------------------------------------


# --- the processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Worker:
    """One `crmbot run` process."""

    index: int
    worker_id: str
    port: int | None
    process: asyncio.subprocess.Process
    log: Path
    started_at: float
    killed_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.killed_at is None and self.process.returncode is None

    def log_tail(self, characters: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


@dataclass
class Fleet:
    """N workers on one database and one fake Bot API."""

    fake: FakeTelegram
    database_url: str
    workdir: Path
    mode: Mode
    lease_seconds: float
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    _starts: int = 0

    def base_environment(self) -> dict[str, str]:
        """The developer's environment minus every key and channel setting, plus ours."""
        keep = {
            name: value
            for name, value in os.environ.items()
            if not name.endswith(("_API_KEY", "_BASE_URL"))
            and not name.startswith(("LLM_", "TELEGRAM_", "IMAP_", "SMTP_", "EMAIL_"))
            and name not in {"DATABASE_URL", "DEFAULT_AGENT", "WORKER_ID", "EVENTS_PORT"}
        }
        return (
            keep
            | {
                "DATABASE_URL": self.database_url,
                "LLM_PROVIDER": "offline",
                "DEFAULT_AGENT": STEPS_AGENT,
                "TELEGRAM_BOT_TOKEN": self.fake.token,
                "TELEGRAM_BASE_URL": self.fake.base_url,
                "TELEGRAM_STAFF_CHAT_ID": str(STAFF_CHAT),
                "LEASE_SECONDS": f"{self.lease_seconds:g}",
                # Answer at once: the production quiet time (2 s) would set the pace alone.
                "COALESCE_SECONDS": "0",
                "BUSINESS_HOURS": "mon-sun 00:00-00:00",
                "QUIET_HOURS": "none",
                "PROACTIVE_MAX_PER_WEEK": "1000",
                "PROACTIVE_DAILY_LIMIT": "100000",
                # FLEET_LOG_LEVEL=INFO keeps each run's end in the workers' logs, to trace a
                # failure by its run ids.
                "LOG_LEVEL": os.environ.get("FLEET_LOG_LEVEL", "WARNING"),
            }
            | self.extra_env
        )

    def environment(self, worker_id: str, port: int | None) -> dict[str, str]:
        env = self.base_environment() | {"WORKER_ID": worker_id}
        if port is not None:
            env |= {
                "TELEGRAM_WEBHOOK_URL": WEBHOOK_URL,
                "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1",
                "TELEGRAM_WEBHOOK_PORT": str(port),
            }
        return env

    async def command(self, *args: str) -> str:
        """Run `crmbot ARGS...` on the fleet's database; its output, or an error with it."""
        process = await asyncio.create_subprocess_exec(
            CRMBOT,
            *args,
            env=self.base_environment(),
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(
                f"crmbot {' '.join(args)} exited with {process.returncode}:\n"
                f"{output.decode(errors='replace')[-3000:]}"
            )
        return output.decode(errors="replace")

    async def start(self, count: int) -> None:
        """Start `count` workers at once and wait until each one serves."""
        await asyncio.gather(*(self.start_worker(n) for n in range(count)))
        await self.ready(count)

    async def start_worker(self, index: int, worker_id: str | None = None) -> Worker:
        self._starts += 1
        worker_id = worker_id or f"worker-{index + 1}-start-{self._starts}"
        port = free_port() if self.mode == "webhook" else None
        log = self.workdir / f"{worker_id}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                CRMBOT,
                "run",
                env=self.environment(worker_id, port),
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        worker = Worker(index, worker_id, port, process, log, time.monotonic())
        self.workers.append(worker)
        return worker

    async def ready(self, count: int, within: float = 60.0) -> None:
        """Every started worker has finished its start-up (each registers the bot's commands
        with setMyCommands last), and in webhook mode accepts connections."""
        deadline = time.monotonic() + within
        while len(self.fake.calls_of("setMyCommands")) < self._starts or not all(
            [await _accepts(w.port) for w in self.alive() if w.port is not None]
        ):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} workers did not start within {within:g} s")
            await asyncio.sleep(0.1)

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def webhook_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{w.port}{WEBHOOK_PATH}" for w in self.alive()]

    def check(self) -> None:
        """Raise if a worker the harness did not kill has exited."""
        for worker in self.workers:
            if worker.killed_at is None and worker.process.returncode is not None:
                raise RuntimeError(
                    f"{worker.worker_id} exited with {worker.process.returncode}:\n"
                    f"{worker.log_tail()}"
                )

    async def kill(self, worker: Worker) -> float:
        """SIGKILL `worker`: nothing released, nothing flushed. Returns the wall-clock time."""
        worker.killed_at = time.time()
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()
        return worker.killed_at

    async def stop(self, grace: float = 60.0) -> None:
        """SIGTERM every live worker (a clean stop: runs in progress finish), and SIGKILL
        those still running after `grace` seconds."""
        live = [w.process for w in self.workers if w.process.returncode is None]
        for process in live:
            process.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=grace)
        for process in live:
            if process.returncode is None:
                process.kill()
        if late:
            await asyncio.wait(late)


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# --- set-up -------------------------------------------------------------------------------------


async def prepare(fleet: Fleet, scheduled: int) -> None:
    """Migrate once, import the agents, make the check-in job and its contacts.

    The job's next slot is put a minute in the past, as if every worker had been down when it
    came: all of them see it due the moment they start, and it must fire once.
    """
    await fleet.command("db", "upgrade")
    agents = fleet.workdir / "agents"
    agents.mkdir(exist_ok=True)
    for definition in agent_definitions():
        (agents / f"{definition['name']}.yaml").write_text(yaml.safe_dump(definition))
    await fleet.command("agent", "import", str(agents))
    await fleet.command("jobs", "list")  # makes the job rows from the definitions
    db = Database(fleet.database_url)
    try:
        async with db.transaction() as session:
            for n in range(scheduled):
                chat = FIRST_SCHEDULED + n
                identity = Identity("telegram", str(chat), name=f"Sched{n}", telegram_user_id=chat)
                contact = await resolve_contact(session, identity)
                contact.tags = [SCHEDULED_TAG]
                await open_conversation(session, contact.id, "telegram")
            await session.execute(
                update(Job)
                .where(Job.agent_name == CHECK_IN_AGENT)
                .values(next_fire_at=utcnow() - timedelta(seconds=60))
            )
    finally:
        await db.dispose()
