"""Times a two-step turn the same way for every framework and prints the figures as JSON.

Shared by the framework scripts beside it. They run in the frameworks' own virtualenv, outside
the repository, so nothing here may import crmbot.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable

STEPS_PER_TURN = 2
CONTACT = "Ann"
ANSWER = "Hello Ann, how can I help?"
CARD = {"name": "Ann", "email": "ann@example.com", "tags": ["prospect"], "lead_score": 40}
Turn = Callable[[], Awaitable[None]]


def parse_args(description: str, models: list[str]) -> argparse.Namespace:
    """The options every framework script takes; `models` are its fake models, main first."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--turns", type=int, default=300, help="turns per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=30, help="untimed turns first")
    parser.add_argument("--model", choices=models, default=models[0])
    return parser.parse_args()


async def time_turns(turn: Turn, turns: int) -> tuple[float, float]:
    """Wall and CPU microseconds per step over `turns` consecutive turns.

    CPU time (all of the process's threads) is the steadier figure on a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(turns):
        await turn()
    steps = turns * STEPS_PER_TURN
    return (time.perf_counter() - wall) * 1e6 / steps, (time.process_time() - cpu) * 1e6 / steps


async def measure(turn: Turn, args: argparse.Namespace) -> list[tuple[float, float]]:
    for _ in range(args.warmup):
        await turn()
    repeats = []
    for _ in range(args.repeats):
        # A collection left over from the previous repeat would be charged to this one.
        gc.collect()
        repeats.append(await time_turns(turn, args.turns))
    return repeats


def report(
    framework: str,
    version: str,
    model: str,
    repeats: list[tuple[float, float]],
    tool_calls: int,
    turns: int,
) -> None:
    """One JSON object on stdout: the only thing the benchmark reads from this process."""
    figures = {
        "framework": framework,
        "version": version,
        "model": model,
        "us_per_step": [wall for wall, _ in repeats],
        "cpu_us_per_step": [cpu for _, cpu in repeats],
        "tool_calls": tool_calls,
        "turns": turns,
        "python": sys.version.split()[0],
    }
    print(json.dumps(figures))
