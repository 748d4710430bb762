"""Agent definition rows as such, without reading their specs (the catalog does that)."""

from __future__ import annotations

from bot.store.db import Tx
from bot.store.models import AgentDefinitionRow


async def agent_exists(session: Tx, name: str) -> bool:
    """Whether an agent definition named `name` is stored, enabled or not."""
    return await session.get(AgentDefinitionRow, name) is not None
