"""The installed `crmbot` command run from async tests, without blocking the loop that the
tests' local servers (websites, model stubs) answer on."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.app.test_cli import CRMBOT, _clean_env


async def run_crmbot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        str(CRMBOT),
        *args,
        cwd=cwd,
        env={**_clean_env(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())
