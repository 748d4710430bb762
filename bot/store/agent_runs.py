"""Agent runs read back for people: one run, or an agent's latest runs."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.db import Tx
from bot.store.models import AgentRun


async def find_run(session: Tx, run_id: str) -> AgentRun | None:
    """The run with id `run_id`, if there is one."""
    return await session.get(AgentRun, run_id)


async def latest_runs_of(session: Tx, agent_name: str, limit: int = 10) -> list[AgentRun]:
    """The agent's last `limit` runs, newest first."""
    query = (
        select(AgentRun)
        .where(AgentRun.agent_name == agent_name)
        .order_by(AgentRun.started_at.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
