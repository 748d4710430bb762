"""`crmbot run` as a real process on Telegram: answers, stops cleanly on SIGTERM, resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import ADMIN_ID, ALWAYS_OPEN, STAFF_CHAT, eventually

CRMBOT = str(Path(sys.executable).parent / "crmbot")
TEMPLATES = str(Path(__file__).resolve().parents[2] / "agents" / "templates")
ANN = 501


def _env(fake: FakeTelegram, tmp_path: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith(("LLM_", "TELEGRAM_"))
    }
    return keep | {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crmbot.db'}",
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_BASE_URL": fake.base_url,
        "TELEGRAM_STAFF_CHAT_ID": str(STAFF_CHAT),
        "TELEGRAM_ADMIN_IDS": str(ADMIN_ID),
        "COALESCE_SECONDS": "0.05",
        "BUSINESS_HOURS": ALWAYS_OPEN,
        "LOG_LEVEL": "INFO",
    }


async def _start(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        CRMBOT,
        "run",
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _import_agents(env: dict[str, str], cwd: Path) -> None:
    imported = await asyncio.create_subprocess_exec(
        CRMBOT, "agent", "import", TEMPLATES, env=env, cwd=cwd, stdout=asyncio.subprocess.DEVNULL
    )
    assert await imported.wait() == 0


async def _terminate(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_crmbot_run_serves_telegram_stops_on_sigterm_and_resumes(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path)
    await _import_agents(env, tmp_path)
    process = await _start(env, tmp_path)
    try:
        fake.user_message(ANN, "hi", first_name="Ann")
        await eventually(lambda: texts(fake, ANN), within=20)
    finally:
        code, log = await _terminate(process)
    assert code == 0, log
    assert "stop requested" in log
    assert "Traceback" not in log

    fake.user_message(ANN, "Lead tracking for our agency", first_name="Ann")  # while down
    process = await _start(env, tmp_path)
    try:
        await eventually(lambda: len(texts(fake, ANN)) == 2, within=20)
    finally:
        code, log = await _terminate(process)
    assert code == 0, log
    first, second = texts(fake, ANN)
    assert first.endswith("What would you like crmbot to help your business with?")
    assert second == "Thanks! How many people are on your team?"


async def test_a_restart_after_sigkill_takes_over_within_lease_seconds(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    """A killed worker's poller and conversation leases lapse with its heartbeats: its
    successor (a new pid, so a new WORKER_ID) polls and answers within LEASE_SECONDS."""
    env = _env(fake, tmp_path) | {"LEASE_SECONDS": "3"}
    await _import_agents(env, tmp_path)
    process = await _start(env, tmp_path)
    try:
        fake.user_message(ANN, "hi", first_name="Ann")
        await eventually(lambda: texts(fake, ANN), within=20)
    finally:
        process.kill()  # SIGKILL: no release of anything
        await process.wait()
    fake.user_message(ANN, "Lead tracking for our agency", first_name="Ann")
    loop = asyncio.get_running_loop()
    restarted = loop.time()
    process = await _start(env, tmp_path)
    try:
        await eventually(lambda: len(texts(fake, ANN)) == 2, within=20)
        taken_over = loop.time() - restarted
    finally:
        code, log = await _terminate(process)
    assert code == 0, log
    # The lease lapse plus start-up (generous for a loaded machine); the old poller lease alone
    # kept a successor waiting 60 s.
    assert taken_over < 3 + 12, f"took {taken_over:.1f}s"
