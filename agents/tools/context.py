"""The context a tool runs in: the run's state, its conversation scope and the staff desk.

A tool gets no session: what it may read and change is `scope` (the run's own contact,
conversation and deals), and what it may ask of people is `ask_staff`.
"""

from __future__ import annotations

from typing import Any

from agents.run_state import RunState
from agents.tools.base import ToolRefused
from bot.desk.drafts import post_draft
from bot.desk.staff import notify_staff
from bot.store.audit import AuditLog
from bot.store.db import Tx
from bot.store.drafts import add_draft
from bot.store.models import Draft
from bot.store.scope import ConversationScope


class ToolContext:
    __slots__ = ("_session", "audit", "run", "scope")

    def __init__(self, session: Tx, run: RunState, audit: AuditLog) -> None:
        self._session, self.run, self.audit = session, run, audit
        self.scope = ConversationScope(
            session, contact_id=run.contact_id, conversation_id=run.conversation_id
        )

    def require_own_contact(self, contact_id: int | None) -> int:
        """The run's contact; refuses any other id the model names."""
        if contact_id is not None and contact_id != self.run.contact_id:
            raise ToolRefused(
                "out_of_scope",
                f"This conversation is with contact {self.run.contact_id}; you may not act for "
                f"contact {contact_id}.",
            )
        return self.run.contact_id

    async def ask_staff(self, *, key: str, kind: str, text: str, meta: dict[str, Any]) -> None:
        """Post to staff about this conversation (a confirmation to approve, say)."""
        await notify_staff(
            self._session,
            key=key,
            conversation_id=self.run.conversation_id,
            contact_id=self.run.contact_id,
            kind=kind,
            text=text,
            meta=meta,
        )

    async def draft_for_staff(
        self,
        *,
        key: str,
        text: str,
        reason: str,
        citations: list[dict[str, Any]],
        confidence: float | None,
    ) -> Draft:
        """Keep a reply the code would not send as a draft, and show it to staff (once)."""
        run = self.run
        draft, created = await add_draft(
            self._session,
            key=key,
            kind="reply",
            agent=run.agent.name,
            run_id=run.run_id,
            contact_id=run.contact_id,
            conversation_id=run.conversation_id,
            channel=run.channel,
            question=run.question,
            text=text,
            reason=reason,
            citations=citations,
            confidence=confidence,
        )
        if created:
            await post_draft(self._session, draft)
            await self.audit.append(
                self._session,
                "draft_created",
                {"draft": draft.id, "reason": reason, "confidence": confidence, "text": text},
                actor=run.actor,
                run_id=run.run_id,
                conversation_id=run.conversation_id,
            )
        return draft
