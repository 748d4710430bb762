"""Pipeline hygiene: each owner gets one message listing exactly their stale deals."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from agents.definition import TEMPLATES_DIR, load_definition_file
from bot.store import staff_members
from bot.store.models import AuditEvent, Contact, Deal, OutboxItem
from scheduler.hygiene import LINES_PER_OWNER
from tests.scheduler.conftest import Proactive, at
from tests.support.harness import RecordingChannel

OWNERS = ["Dana", "Eli", "Fay", None]
STAGES = ["new", "qualified", "proposal", "negotiation", "won", "lost"]


async def _pipeline(proactive: Proactive, deals: int, contacts: int = 1000) -> dict[Any, int]:
    """`deals` deals over `contacts` contacts; returns the stale count per owner."""
    now = at(0, 7)
    rng = random.Random(7)
    async with proactive.db.transaction() as session:
        await session.execute(
            insert(Contact),
            [{"name": f"C{n}", "tags": [], "custom_fields": {}} for n in range(contacts)],
        )
    stale: dict[Any, int] = {}
    rows = []
    for n in range(deals):
        owner, stage = rng.choice(OWNERS), rng.choice(STAGES)
        quiet = rng.choice([1, 5, 13, 15, 40, 200])
        if stage not in ("won", "lost") and quiet >= 15:
            stale[owner] = stale.get(owner, 0) + 1
        rows.append(
            {
                "contact_id": 1 + n % contacts,
                "title": f"Deal {n}",
                "stage": stage,
                "owner": owner,
                "last_activity_at": now - timedelta(days=quiet, minutes=1),
            }
        )
    async with proactive.db.transaction() as session:
        for start in range(0, len(rows), 10_000):
            await session.execute(insert(Deal), rows[start : start + 10_000])
    return stale


async def test_the_hygiene_scan_over_100000_deals_finds_exactly_the_stale_ones(
    proactive: Proactive,
) -> None:
    telegram = RecordingChannel(name="telegram")
    proactive.harness.app.add_channel(telegram)
    proactive.harness.app.outbox_workers["telegram"].clock = proactive.clock
    proactive.scheduler.direct_channel = "telegram"
    definition = load_definition_file(TEMPLATES_DIR / "pipeline-hygiene.yaml")
    await proactive.add_agent(definition.model_dump(mode="json"))
    async with proactive.db.transaction() as session:
        await staff_members.add(session, "Dana", 1001)
        await staff_members.add(session, "Eli", 1002)
        await staff_members.add(session, "Fay")  # no Telegram id: her list goes to the group
    stale = await _pipeline(proactive, 100_000)

    proactive.clock.set(at(0, 6, 59))  # Monday before 07:00
    await proactive.tick()
    proactive.clock.set(at(0, 7, 0, 1))
    report = await proactive.tick()
    assert report.fired == [("pipeline-hygiene", at(0, 7))]
    await proactive.harness.app.flush_outbox()

    [audit] = await proactive.rows(AuditEvent, AuditEvent.kind == "hygiene_report")
    expected = {("(no owner)" if k is None else k): v for k, v in stale.items()}
    assert audit.payload["owners"] == expected
    assert audit.payload["deals"] == sum(stale.values())
    assert audit.payload["direct_messages"] == 2

    direct = dict(telegram.delivered)
    assert set(direct) == {"1001", "1002"}
    assert direct["1001"].startswith(f"🧹 {stale['Dana']} deal(s) with no activity for 14+ days")
    lines = [line for line in direct["1001"].splitlines() if line.startswith("• ")]
    assert len(lines) == LINES_PER_OWNER
    assert "next: " in lines[0] and "quiet " in lines[0]
    assert direct["1001"].endswith(f"…and {stale['Dana'] - LINES_PER_OWNER} more")
    group = [text for _, text in proactive.harness.staff.delivered]
    assert any(text.startswith(f"🧹 {stale['Fay']} deal(s)") and "Fay" in text for text in group)
    assert any("and no owner" in text for text in group)
    # Nothing went to a customer, and a second tick sends nothing twice.
    assert await proactive.rows(OutboxItem, OutboxItem.automatic.is_(True)) == []
    proactive.clock.advance(minutes=1)
    await proactive.tick()
    await proactive.harness.app.flush_outbox()
    assert len(telegram.delivered) == 2
