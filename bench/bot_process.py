"""A real `crmbot run` process for the crash benchmarks: started, SIGKILLed and started again.

Shared by `bench.crash_outbox` (the outbox alone, on the fake Bot API) and `bench.crash` (both
channels, proactive jobs too). The child gets the developer's environment without any key or
channel setting, plus what the benchmark gives it, and writes its output to one log file per
start in the work directory, so a crash of the child can be shown with its last lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.fake_telegram import FakeTelegram

CRMBOT = str(Path(sys.executable).parent / "crmbot")


def clean_environment() -> dict[str, str]:
    """The developer's environment minus every key, channel and database setting."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_API_KEY", "_BASE_URL"))
        and not name.startswith(("LLM_", "TELEGRAM_", "IMAP_", "SMTP_", "EMAIL_"))
        and name not in {"DATABASE_URL", "DEFAULT_AGENT", "WORKER_ID"}
    }


def loopback_only(url: str) -> str:
    """`url` if its database is on this machine; a benchmark never writes anywhere else."""
    host = make_url(url).host
    if host not in (None, "", "localhost") and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"--database-url must be on 127.0.0.1, not {host}")
    return url


def parse_latency(text: str) -> tuple[float, float]:
    """'20-150' (milliseconds) as (0.02, 0.15) seconds; '50' as (0.05, 0.05)."""
    low, _, high = text.partition("-")
    return float(low) / 1000, float(high or low) / 1000


def add_latency(
    fake: FakeTelegram, rng: random.Random, latency: tuple[float, float], count: int
) -> None:
    """A seeded delay before each of the next `count` sendMessage answers, after the server
    has acted on the request, as Telegram does: the window a kill can cut a send in."""
    low, high = latency
    for _ in range(count):
        fake.delay_next("sendMessage", rng.uniform(low, high))


class BotProcess:
    """One `crmbot run` at a time in `workdir`; counts its starts and kills."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"crmbot-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the handle
            self.process = await asyncio.create_subprocess_exec(
                CRMBOT,
                "run",
                env=self.env,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    async def kill_and_restart(self) -> None:
        """SIGKILL: nothing is released, nothing flushed; then a new process (a new pid, so a
        new WORKER_ID) that must take over what the dead one held."""
        await self.stop(signal.SIGKILL)
        self.kills += 1
        await self.start()

    async def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Send `how` and wait; a process that has not ended 30 s later is killed."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(how)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def check_running(self) -> None:
        """Raise with the end of the child's log if it exited on its own."""
        if self.process is not None and self.process.returncode is not None:
            log = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"crmbot exited with {self.process.returncode}:\n{log[-3000:]}")

    def logs(self) -> str:
        """Every start's log, oldest first."""
        return "".join(
            (self.workdir / f"crmbot-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.workdir / f"crmbot-{n}.log").exists()
        )
