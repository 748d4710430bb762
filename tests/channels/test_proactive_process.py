"""`crmbot run` as a real process: an event posted over HTTP makes an agent write on Telegram."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

from tests.channels.conftest import texts
from tests.channels.test_telegram_process import (
    ANN,
    CRMBOT,
    _env,
    _import_agents,
    _start,
    _terminate,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.telegram_rig import eventually

SECRET = "s3cret-events-token"
WELCOME_BACK = """\
name: welcome-back
goal: Thank people who try the demo and offer help.
persona: A friendly guide.
tools: [send_message]
triggers:
  - type: event
    event: demo.ping
    message: "Hi {first_name}, thanks for trying the demo!"
match: {channels: [telegram]}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _post_event(port: int, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/events",
            json=body,
            headers={"Authorization": f"Bearer {SECRET}"},
        ) as response,
    ):
        return response.status, await response.json()


async def test_an_event_posted_to_crmbot_run_sends_a_proactive_telegram_message(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    port = _free_port()
    env = _env(fake, tmp_path) | {
        "EVENTS_PORT": str(port),
        "EVENTS_SECRET": SECRET,
        "QUIET_HOURS": "none",
        "SCHEDULER_TICK_SECONDS": "0.5",
    }
    await _import_agents(env, tmp_path)
    (tmp_path / "welcome.yaml").write_text(WELCOME_BACK)
    imported = await asyncio.create_subprocess_exec(
        CRMBOT, "agent", "import", "welcome.yaml", env=env, cwd=tmp_path
    )
    assert await imported.wait() == 0
    process = await _start(env, tmp_path)
    try:
        fake.user_message(ANN, "hi", first_name="Ann")  # a bot may write only once asked
        await eventually(lambda: texts(fake, ANN), within=20)
        status, answer = await _post_event(
            port, {"contact": {"telegram_id": ANN}, "type": "demo.ping", "id": "ping-1"}
        )
        assert status == 202, answer
        assert answer["woke"] == ["welcome-back"]
        await eventually(
            lambda: "Hi Ann, thanks for trying the demo!" in texts(fake, ANN), within=20
        )
        status, again = await _post_event(
            port, {"contact": {"telegram_id": ANN}, "type": "demo.ping", "id": "ping-1"}
        )
        assert status == 200 and again["duplicate"] is True
    finally:
        code, log = await _terminate(process)
    assert code == 0, log
    assert "Traceback" not in log
    assert texts(fake, ANN).count("Hi Ann, thanks for trying the demo!") == 1
