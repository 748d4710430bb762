"""Several workers on one PostgreSQL database: exactly once, in order, and how fast.

Real `crmbot run` processes (the offline provider, no key) share one scratch database, created
on the PostgreSQL server --database-url names and dropped afterwards, and the fake Telegram
Bot API (tests/support) on 127.0.0.1. The load is 200 customers (--conversations) writing
2,000 messages (--messages) in private chats; each waits for its answer before writing again,
and a seeded fifth of the turns are two messages at once. The agent asks numbered questions,
so the n-th reply to a chat must be question n. Cases:

1. webhook mode with 1, 2 and 3 workers (--workers): each worker serves the webhook on its own
   port and every update is posted to the next worker in turn, as a load balancer would; any
   worker takes any update. Throughput: messages answered per second, first message sent to
   last turn over, with the turn latencies (message sent -> reply received and settled);
2. webhook mode with the most workers, one SIGKILLed when 40% of the turns are over; the
   posts it refused or cut off go to the next worker, as Telegram delivers an update again;
3. polling mode with the most workers: one is elected poller by a lease, and it is the one
   killed. The others must take its poller and conversation leases over.

Every case also runs a job firing every minute (`bench-check-in`, for 5 contacts), whose slot
is put in the past before the workers start, so that all of them find it due at once.

Counted from the fake's side: replies per turn, replies received twice, out of order or
never, check-ins per contact against the firings. From the store: messages recorded once,
each given to exactly one run (the audit trail's run records), unhandled messages, outbox
outcomes (`unknown`: a reply cut off mid-send by the kill, never resent), firings per slot.
After a kill: for every lease the victim held, seconds from the kill until it lapsed and
until another worker held it, against LEASE_SECONDS.

Telegram's overall send limit is raised to 1000/s per worker (it is counted per process:
with the default 30/s, the limit would be measured, not the workers); one message a second per
chat still holds within each process. Usage:

    python -m bench.workers [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
        [--messages 2000] [--conversations 200] [--workers 1,2,3] [--lease-seconds 15]
        [--seed 1] [--burst-share 0.2] [--only throughput|kill ...]
        [--kill-modes webhook,polling] [--logs DIR] [--quick] [--json PATH]

--quick: 300 messages over 30 conversations, LEASE_SECONDS 5. Exits 1 if anything was lost,
doubled or out of order in any case.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.results_io import Collector, write_results
from tests.support.fleet_load import Takeover
from tests.support.fleet_run import Case, Outcome, run_case

BENCHMARK = "workers"
DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def cases(args: argparse.Namespace) -> list[Case]:
    counts = sorted({int(n) for n in args.workers.split(",")})
    common = {
        "messages": args.messages,
        "conversations": args.conversations,
        "server_url": args.database_url,
        "lease_seconds": args.lease_seconds,
        "seed": args.seed,
        "burst_share": args.burst_share,
        "extra_env": {"TELEGRAM_MAX_MESSAGES_PER_SECOND": "1000"},
    }
    chosen: list[Case] = []
    if "throughput" in args.only:
        chosen += [Case("webhook", n, **common) for n in counts]
    if "kill" in args.only and max(counts) > 1:
        modes = [mode for mode in ("webhook", "polling") if mode in args.kill_modes.split(",")]
        chosen += [Case(mode, max(counts), kill=True, **common) for mode in modes]
    return chosen


# --- printing -----------------------------------------------------------------------------------


def show(outcome: Outcome) -> None:
    t, case = outcome.tally, outcome.case
    print(f"\n== {case.label}: {t.sent} messages over {case.conversations} conversations ==")
    print(
        f"throughput: {outcome.throughput:.1f} messages/s ({outcome.seconds:.1f} s); turn "
        f"latency p50 {outcome.latency(0.5):.2f} s, p95 {outcome.latency(0.95):.2f} s, "
        f"max {max(outcome.latencies, default=float('nan')):.2f} s"
    )
    print(
        f"turns: {t.turns} ({t.stalled_turns} stalled); one-message turns by replies "
        f"{_counts(t.single_turns)}; two-message turns by replies {_counts(t.double_turns)}"
    )
    print(
        f"fake: {t.replies} replies to {t.sent} messages; delivered twice "
        f"{t.total('delivered_twice')}, out of order {t.total('out_of_order')}, recorded as "
        f"sent but never arrived {t.total('never_arrived')}, `unknown` and never arrived "
        f"{t.total('unknown_missing')}, no question {t.total('other')}; staff posts "
        f"{t.staff_posts}"
    )
    print(
        f"store: recorded {t.recorded} (twice: {t.recorded_twice}), unanswered {t.unhandled}, "
        f"messages by the number of runs given them {_counts(t.runs_per_message)}, resumed "
        f"runs {t.resumed_runs}, handed off {t.handed_off}, questions asked again "
        f"{t.total('asked_again')}; outbox {_counts(t.outbox)}"
    )
    print(
        f"lost {t.lost}, doubled {t.doubled}, out of order {t.total('out_of_order')}, "
        f"asked again {t.total('asked_again')}"
    )
    print(
        f"replies by worker: {outcome.sent_by}; updates posted again: {outcome.redelivered}; "
        f"replies to one chat less than 1 s apart: "
        f"{sum(c.faster_than_allowed for c in t.chats.values())}"
    )
    show_firings(outcome)
    if outcome.victim is not None:
        show_takeovers(outcome)
    print(f"peak database connections (all workers): {outcome.peak_connections}")
    for line, count in outcome.log_lines.most_common(8):
        print(f"  logged {count}x: {line}")
    for problem in t.problems():
        print(f"PROBLEM: {problem}")


def show_firings(outcome: Outcome) -> None:
    t = outcome.tally
    slots = Counter(f.scheduled_for for f in t.firings)
    print(
        f"firings: {len(t.firings)} for {len(slots)} slots (most for one slot: "
        f"{max(slots.values(), default=0)}), by "
        f"{_counts(Counter(f.worker for f in t.firings))}; their wake-ups "
        f"{_counts(sum((f.wakeups for f in t.firings), Counter()))}; check-ins received "
        f"per contact {sorted(t.check_ins.values())}, ran {sorted(t.check_ins_ran.values())}; "
        f"check-in sends {_counts(t.check_in_outbox)}"
    )


def show_takeovers(outcome: Outcome) -> None:
    assert outcome.victim is not None
    lease = outcome.case.lease_seconds
    print(
        f"killed {outcome.victim.worker_id}; leases it held, by kind "
        f"(seconds after the kill; LEASE_SECONDS={lease:g}):"
    )
    kinds: dict[str, list[Takeover]] = {}
    for takeover in outcome.takeovers:
        kinds.setdefault(takeover.kind, []).append(takeover)
    for kind, found in sorted(kinds.items()):
        taken = [t.taken_after for t in found if t.taken_after is not None]
        print(
            f"  {kind}: {len(found)}, lapsed after {_span([t.lapsed_after for t in found])}, "
            f"taken over after {_span(taken)} ({len(found) - len(taken)} never needed)"
        )


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f} s" if values else "-"


def _counts(counter: Mapping[Any, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=str)) + "}"


# --- records ------------------------------------------------------------------------------------


def record(collector: Collector, outcome: Outcome) -> None:
    t, label = outcome.tally, outcome.case.label
    if not outcome.case.kill:
        collector.add(label, "throughput", outcome.throughput, "msg/s", None)
        collector.add(label, "p95_turn_s", outcome.latency(0.95), "s", None)
    collector.add(label, "lost", t.lost, "", "0")
    collector.add(label, "doubled", t.doubled, "", "0")
    collector.add(label, "out_of_order", t.total("out_of_order"), "", "0")
    collector.add(label, "asked_again", t.total("asked_again"), "", "0")
    slots = Counter(f.scheduled_for for f in t.firings if not f.manual)
    collector.add(label, "most_firings_per_slot", max(slots.values(), default=0), "", "1")
    taken = [x.taken_after for x in outcome.takeovers if x.taken_after is not None]
    if taken:
        collector.add(label, "max_takeover_s", max(taken), "s", None)


async def main(args: argparse.Namespace) -> int:
    logging.disable(logging.CRITICAL)  # the fake's and SQLAlchemy's chatter; figures only
    collector = Collector(BENCHMARK, "postgresql")
    failed = False
    for case in cases(args):
        if args.logs:  # the workers' logs, kept for a look at what went wrong
            workdir = Path(args.logs) / case.label.replace(" ", "-").replace(",", "")
            workdir.mkdir(parents=True, exist_ok=True)
            outcome = await run_case(case, workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="workers-") as tmp:
                outcome = await run_case(case, Path(tmp))
        show(outcome)
        record(collector, outcome)
        failed |= bool(outcome.tally.problems())
    write_results(args.json, collector.records)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER,
        help="a database on the PostgreSQL server to use (a scratch one is made)",
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--workers", default="1,2,3", help="worker counts, e.g. 1,2,3")
    parser.add_argument("--lease-seconds", type=float, default=15.0, help="default: production's")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst-share", type=float, default=0.2)
    parser.add_argument(
        "--only", nargs="+", choices=("throughput", "kill"), default=["throughput", "kill"]
    )
    parser.add_argument(
        "--kill-modes", default="webhook,polling", help="the kill cases to run, e.g. polling"
    )
    parser.add_argument("--logs", default=None, help="keep each case's worker logs here")
    parser.add_argument("--quick", action="store_true", help="300 messages, 30 conversations")
    parser.add_argument("--json", default=None, help="write the records here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.conversations, args.lease_seconds = 300, 30, 5.0
    if make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("several workers need PostgreSQL: --database-url postgresql+asyncpg://...")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
