"""Two `crmbot run` workers on one PostgreSQL database, one SIGKILLed mid-run: every message
recorded and answered once, replies in order, the job's slot fired once, and the killed
worker's leases taken over. The small version of `python -m bench.workers`."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.support.fleet_run import Case, run_case
from tests.support.fleet_tally import number_of

PG_URL = os.environ.get("TEST_DATABASE_URL")
LEASE_SECONDS = 5.0
SWEEP_SECONDS = 2.0
"""How often every worker looks for conversations with unanswered messages (the dispatcher's
sweep): a dead worker's conversation is taken over at the first sweep after its lease lapsed."""

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(PG_URL is None, reason="several workers need PostgreSQL: TEST_DATABASE_URL"),
]


async def test_two_webhook_workers_one_killed_answer_every_message_once_and_in_order(
    tmp_path: Path,
) -> None:
    assert PG_URL is not None
    case = Case(
        "webhook",
        workers=2,
        messages=100,
        conversations=20,
        server_url=PG_URL,
        kill=True,
        lease_seconds=LEASE_SECONDS,
        scheduled=2,
        time_limit=120,
        patience=60,
    )
    outcome = await run_case(case, tmp_path)
    tally = outcome.tally

    assert tally.problems() == []
    assert tally.sent == tally.recorded == 100
    assert tally.runs_per_message == Counter({1: 100})  # each message given to one run
    for chat in tally.chats.values():
        queued = [number_of(text) for _, text in chat.queued]
        assert queued == list(range(1, len(queued) + 1))  # question n is the n-th reply
        # ...and the fake received them in that order, each once, but for a reply the kill
        # cut off before it reached the fake (`unknown`: never sent again, staff are told).
        reached = [
            number_of(text)
            for status, text in chat.queued
            if status == "sent" or text in chat.received
        ]
        assert chat.numbers == reached
    # A reply the kill cut off mid-send is `unknown`, never sent again; all others arrived.
    assert tally.replies == tally.outbox["sent"] + tally.outbox["unknown"] - tally.total(
        "unknown_missing"
    )
    assert tally.double_turns  # some turns had a message arrive while the other worker ran
    assert len(outcome.sent_by) == 2  # both workers delivered

    assert tally.firings_done >= 1  # the slot both workers found due at start, fired once
    assert tally.check_ins == tally.check_ins_ran  # each contact's wake-ups sent once each

    assert outcome.victim is not None
    taken = [t.taken_after for t in outcome.takeovers if t.taken_after is not None]
    assert all(t <= LEASE_SECONDS + SWEEP_SECONDS + 5 for t in taken), outcome.takeovers
