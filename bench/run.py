"""Run every benchmark, then write `bench/results/latest.md` (tables) and `latest.png` (chart).

Each benchmark module runs in a subprocess of its own, `python -m bench.NAME --json FILE
[--quick] [--database-url URL]`: on SQLite, and again on PostgreSQL when --database-url or the
TEST_DATABASE_URL environment variable names one. A module that is missing is noted as not
run; one that fails does not stop the others, is reported in latest.md, and makes this command
exit non-zero once everything else has run. Targets are checked as `bench.results_io`
documents; a missed target is reported, never an error (benchmarks do not assert on timings).

Usage: python -m bench.run [--quick] [--database-url URL] [--only NAME ...] [--timeout 1800]

The chart needs matplotlib (a bench-only dependency); without it latest.md is still written.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from bench.results_io import Record, check_target, read_results

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODULES = (
    "telegram",
    "engine",
    "frameworks",
    "sending",
    "staff_wave",
    "concurrency",
    "data_scale",
    "kb",
    "workers",
    "crash",
)
BOTH_BACKENDS_IN_ONE_RUN = frozenset({"telegram"})
"""Modules that, given a PostgreSQL URL, measure SQLite too in the same run (the telegram
benchmark compares both with one floor run), so they are started once, with the URL."""
POSTGRES_ONLY = frozenset({"workers"})
"""Modules that need PostgreSQL (several worker processes on one database): started once,
with the URL, and not at all without one."""
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parent.parent
TAIL_LINES = 25


@dataclass
class Outcome:
    """One benchmark subprocess: what it measured, or how it failed."""

    module: str
    backend: str
    seconds: float = 0.0
    records: list[Record] = field(default_factory=list)
    error: str | None = None
    tail: list[str] = field(default_factory=list)


@dataclass
class Session:
    """Everything the report needs besides the outcomes."""

    command: str
    quick: bool
    database_url: str | None
    not_run: list[str] = field(default_factory=list)


# Running


def is_present(module: str) -> bool:
    return importlib.util.find_spec(f"bench.{module}") is not None


def plan(modules: list[str], database_url: str | None) -> list[tuple[str, str, str | None]]:
    """(module, backend label, URL to pass) for every subprocess to start, in order."""
    runs: list[tuple[str, str, str | None]] = []
    for module in modules:
        if module in POSTGRES_ONLY:
            runs += [(module, "postgresql", database_url)] if database_url else []
            continue
        if database_url and module in BOTH_BACKENDS_IN_ONE_RUN:
            runs.append((module, "sqlite + postgresql", database_url))
            continue
        runs.append((module, "sqlite", None))
        if database_url:
            runs.append((module, "postgresql", database_url))
    return runs


def run_module(module: str, backend: str, url: str | None, quick: bool, timeout: float) -> Outcome:
    outcome = Outcome(module, backend)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        command = [sys.executable, "-m", f"bench.{module}", "--json", str(results)]
        command += ["--quick"] * quick + (["--database-url", url] if url else [])
        status, outcome.tail = stream(command, timeout)
        outcome.seconds = time.monotonic() - started
        if status != 0:
            outcome.error = f"exited with status {status}" if status > 0 else "timed out"
        elif not results.exists():
            outcome.error = "wrote no results file"
        else:
            outcome.records = read_results(results)
    return outcome


def stream(command: list[str], timeout: float) -> tuple[int, list[str]]:
    """Run `command`, echoing its output as it comes; its status (-1 after `timeout`) and its
    last lines, for the report of a failure."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(f"  {line}", end="", flush=True)
            # Tracebacks name files by absolute path; the report names them from the repo.
            tail.append(line.rstrip("\n").replace(f"{REPO_ROOT}{os.sep}", ""))
        status = process.wait()
    finally:
        timed_out = not timer.is_alive()
        timer.cancel()
    return (-1 if timed_out and status != 0 else status), list(tail)


# The report


def machine() -> list[tuple[str, str]]:
    return [
        ("CPU", f"{cpu_model()} × {os.cpu_count()}"),
        ("RAM", f"{memory_gib():.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return float("nan")


def fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        number = "n/a"
    elif value == int(value) and abs(value) < 1e6:
        number = f"{int(value):,}"
    elif abs(value) >= 100:
        number = f"{value:,.0f}"
    elif abs(value) >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.3g}"
    return f"{number} {unit}".strip()


def verdict(record: Record) -> str:
    met = check_target(record["value"], record["target"])
    return "" if met is None else ("met" if met else "**missed**")


def table(records: list[Record]) -> Iterator[str]:
    yield "| case | metric | backend | value | target | result |"
    yield "|---|---|---|---:|---|---|"
    for r in records:
        cells = [r["case"], r["metric"], r["backend"] or "", fmt(r["value"], r["unit"])]
        cells += [r["target"] or "", verdict(r)]
        yield "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def report(session: Session, outcomes: list[Outcome]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmark results", ""]
    lines += [f"- {name}: {value}" for name, value in [*machine(), ("Date", now)]]
    lines.append(f"- PostgreSQL: {shown_url(session.database_url) or 'not configured'}")
    lines += [f"- Command: `{session.command}`", ""]
    lines += summary(outcomes, session)
    by_benchmark: dict[str, list[Record]] = {}
    for outcome in outcomes:
        for r in outcome.records:
            by_benchmark.setdefault(r["benchmark"], []).append(r)
    for benchmark, records in by_benchmark.items():
        lines += ["", f"## {benchmark}", "", *table(records)]
    lines += failures(outcomes)
    return "\n".join(lines) + "\n"


def summary(outcomes: list[Outcome], session: Session) -> list[str]:
    lines = ["| benchmark | backend | time | records | targets met | status |"]
    lines.append("|---|---|---:|---:|---:|---|")
    for o in outcomes:
        checked = [
            m for m in (check_target(r["value"], r["target"]) for r in o.records) if m is not None
        ]
        status = f"**failed**: {o.error}" if o.error else "ok"
        targets = f"{sum(checked)} of {len(checked)}" if checked else ""
        lines.append(
            f"| {o.module} | {o.backend} | {o.seconds:.0f} s | {len(o.records)} | {targets} "
            f"| {status} |"
        )
    lines += [
        f"| {module} | | | | | not run: no bench.{module} module |" for module in session.not_run
    ]
    return lines


def failures(outcomes: list[Outcome]) -> list[str]:
    lines: list[str] = []
    for o in outcomes:
        if o.error:
            lines += ["", f"## Failed: {o.module} ({o.backend}), {o.error}", "", "```"]
            lines += [*o.tail, "```"]
    return lines


def shown_url(url: str | None) -> str:
    return make_url(url).render_as_string(hide_password=True) if url else ""


def shown_command(args: argparse.Namespace) -> str:
    """The command as it was given, without a database password."""
    parts = ["python -m bench.run"] + ["--quick"] * args.quick
    if args.database_url:
        parts += ["--database-url", shown_url(args.database_url)]
    if args.only:
        parts += ["--only", *args.only]
    return " ".join(parts)


# The chart


def write_png(records: list[Record], path: Path) -> bool:
    """Draw the chart; False when matplotlib is not installed (latest.md does without it)."""
    try:
        import matplotlib  # a bench-only dependency, so imported only here
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    throughput_panel(axes[0][0], records)
    frameworks_panel(axes[0][1], records)
    latency_panel(axes[1][0], records)
    targets_panel(axes[1][1], records)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def label(r: Record) -> str:
    return f"{r['case']} ({r['backend']})" if r["backend"] else r["case"]


def picked(records: list[Record], metric: str, benchmark: str | None = None) -> list[Record]:
    return [
        r
        for r in records
        if r["metric"] == metric and (benchmark is None or r["benchmark"] == benchmark)
    ]


def nothing(axis: Axes, title: str) -> None:
    axis.set_title(title)
    axis.text(0.5, 0.5, "not measured in this run", ha="center", va="center", color="grey")
    axis.set_axis_off()


def bars(axis: Axes, chosen: list[Record], title: str, unit: str) -> None:
    """One bar per record, crmbot's highlighted, log scale when the values span decades."""
    values = [r["value"] for r in chosen]
    colours = ["tab:blue" if r["case"].startswith("crmbot") else "tab:grey" for r in chosen]
    positions = range(len(chosen))
    axis.bar(positions, values, color=colours)
    axis.set_xticks(list(positions), [label(r) for r in chosen], rotation=20, ha="right")
    if min(values) > 0 and max(values) / min(values) > 30:
        axis.set_yscale("log")
    for x, value in zip(positions, values, strict=True):
        axis.annotate(fmt(value, ""), (x, value), ha="center", va="bottom", fontsize=8)
    axis.set_title(title)
    axis.set_ylabel(unit)


def throughput_panel(axis: Axes, records: list[Record]) -> None:
    title = "Telegram end to end: crmbot vs the echo floor"
    chosen = picked(records, "throughput", "telegram")
    if chosen:
        bars(axis, chosen, title, "msg/s")
    else:
        nothing(axis, title)


def frameworks_panel(axis: Axes, records: list[Record]) -> None:
    title = "One agent step vs the frameworks (lower is better)"
    chosen = picked(records, "us_per_step")
    if chosen:
        bars(axis, chosen, title, "µs per step")
    else:
        nothing(axis, title)


def latency_panel(axis: Axes, records: list[Record]) -> None:
    title = "Telegram latency: update available -> sendMessage"
    metrics = ("p50_ms", "p95_ms", "p99_ms")
    cases = list(dict.fromkeys(label(r) for m in metrics for r in picked(records, m, "telegram")))
    if not cases:
        nothing(axis, title)
        return
    width = 0.8 / len(metrics)
    for n, metric in enumerate(metrics):
        found = {label(r): r["value"] for r in picked(records, metric, "telegram")}
        xs = [i + (n - 1) * width for i, case in enumerate(cases) if case in found]
        axis.bar(xs, [found[c] for c in cases if c in found], width, label=metric[:3])
    axis.axhline(25, color="tab:red", linestyle="--", linewidth=1, label="p99 target (open loop)")
    axis.set_xticks(range(len(cases)), cases, rotation=20, ha="right")
    axis.set_yscale("log")
    axis.set_ylabel("ms (log)")
    axis.set_title(title)
    axis.legend(fontsize=8)


def targets_panel(axis: Axes, records: list[Record]) -> None:
    title = "Machine-checkable targets"
    tally: dict[str, list[int]] = {}
    for r in records:
        met = check_target(r["value"], r["target"])
        if met is not None:
            tally.setdefault(r["benchmark"], [0, 0])[0 if met else 1] += 1
    if not tally:
        nothing(axis, title)
        return
    from matplotlib.ticker import MaxNLocator  # optional dependency, see write_png

    names = list(tally)
    hits, misses = [tally[n][0] for n in names], [tally[n][1] for n in names]
    axis.barh(names, hits, color="tab:green", label="met")
    axis.barh(names, misses, left=hits, color="tab:red", label="missed")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("targets")
    axis.set_title(title)
    axis.legend(fontsize=8)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's smaller load")
    parser.add_argument("--database-url", default=None, help="also run on this PostgreSQL database")
    parser.add_argument("--only", nargs="+", choices=MODULES, help="run only these benchmarks")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    url = args.database_url or os.environ.get("TEST_DATABASE_URL") or None
    wanted = list(args.only or MODULES)
    session = Session(shown_command(args), args.quick, url)
    session.not_run = [m for m in wanted if not is_present(m)]
    outcomes = []
    for module, backend, module_url in plan([m for m in wanted if is_present(m)], url):
        print(f"== bench.{module} ({backend}) ==", flush=True)
        outcomes.append(run_module(module, backend, module_url, args.quick, args.timeout))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(report(session, outcomes), encoding="utf-8")
    charted = write_png([r for o in outcomes for r in o.records], RESULTS_DIR / "latest.png")
    print(f"wrote {RESULTS_DIR / 'latest.md'}" + (" and latest.png" if charted else ""))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
