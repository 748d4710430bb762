"""The context a tool runs in: the run's state and a session inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from agents.run_state import RunState
from agents.tools.base import ToolRefused
from bot.store.audit import AuditLog


@dataclass(frozen=True, slots=True)
class ToolContext:
    session: AsyncSession
    run: RunState
    audit: AuditLog

    def require_own_contact(self, contact_id: int | None) -> int:
        """The run's contact; refuses any other id the model names."""
        if contact_id is not None and contact_id != self.run.contact_id:
            raise ToolRefused(
                "out_of_scope",
                f"This conversation is with contact {self.run.contact_id}; you may not act for "
                f"contact {contact_id}.",
            )
        return self.run.contact_id
