"""Researching prospects: contact, sources, opener, draft; one audited run per prospect.

For each row: the prospect is upserted as a contact (tagged `prospect`); the sources are read;
the writer drafts an opener grounded in what was fetched; the opener is stored as an outreach
draft and posted to the contact's staff topic, where a person approves, edits or rejects it.
Nothing is sent here: approving the draft (`bot.desk.drafts`) is what queues the email.

A prospect is drafted once per agent: the draft's key is `research:AGENT:HASH`, HASH being the
first 32 hex digits of the SHA-256 of the prospect's email in lower case (an email can be
longer than the key column). A row whose prospect already has a draft of this agent is
reported as such before anything is fetched, so re-running a file costs nothing and drafts
nothing twice, whatever the sources say now; a rejected prospect stays rejected.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from agents.budget import check_monthly_ceiling
from agents.definition import AgentDefinition
from agents.providers.offline import OfflineProvider
from agents.providers.pool import ProviderPool
from agents.research.feed import FeedSource
from agents.research.fetch import Fetcher
from agents.research.notes import NotesSource
from agents.research.opener import ExtractiveModel, Opener
from agents.research.sources import Gathered, Prospect, Source, gather
from agents.research.website import WebsiteSource
from agents.research.writer import Attempt, OpenerWriter
from bot.core.errors import ConfigurationError, RunError
from bot.desk.drafts import post_draft
from bot.store import drafts, runs
from bot.store.audit import AuditLog, Entry
from bot.store.db import Database, Tx
from bot.store.leads import ContactRef, LeadFields, RowRejected, find_by_ref, import_lead
from bot.store.models import Draft

log = logging.getLogger("agents.research")
PROSPECT_TAG = "prospect"
TRIGGER = "research"
EMAIL = "email"
NO_TOOLS_ALLOWED = (
    "a research agent is given the prospect and what was fetched, and can only hand over a "
    "draft: it takes no tools (least of all send_message)"
)


def check_research_agent(agent: AgentDefinition) -> None:
    """ConfigurationError unless `agent` can research: it must not list any tool, so that
    nothing it is given could reach a prospect (the run offers only `draft_opener`)."""
    if "send_message" in agent.tools:
        raise ConfigurationError(
            f"agent {agent.name} has send_message in its tools: research only drafts, a person "
            "sends (remove it, and every other tool, from tools)"
        )
    if agent.tools:
        raise ConfigurationError(
            f"agent {agent.name} lists tools {agent.tools}: {NO_TOOLS_ALLOWED}; set tools: []"
        )


def draft_key(agent: str, email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"research:{agent}:{digest}"


@dataclass(frozen=True, slots=True)
class ProspectRow:
    """One row of a prospects file: the contact it describes and where to read about them."""

    lead: LeadFields
    website: str | None = None
    feed: str | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one row."""

    status: Literal["drafted", "already", "failed"]
    detail: str = ""
    draft_id: int | None = None


class Researcher:
    """Researches prospects for one agent; rows may be researched concurrently."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        agent: AgentDefinition,
        writer: OpenerWriter,
        sources: list[Source],
        *,
        started_by: str = "cli:research",
    ) -> None:
        check_research_agent(agent)
        self.db, self.audit, self.agent, self.writer = db, audit, agent, writer
        self.sources, self.started_by = sources, started_by

    @property
    def actor(self) -> str:
        return f"agent:{self.agent.name}"

    async def research(self, row: ProspectRow) -> Result:
        """Research one row; never raises for a bad row, a site or a model that fails."""
        if not row.lead.email:
            return Result("failed", "no email: an opener is sent by email")
        key = draft_key(self.agent.name, row.lead.email)
        try:
            prospect, existing = await self._upsert(row, key)
        except RowRejected as rejected:
            return Result("failed", str(rejected))
        if existing is not None:
            who = f" by {existing.decided_by}" if existing.decided_by else ""
            return Result(
                "already", f"drafted before: #{existing.id}, {existing.status}{who}", existing.id
            )
        gathered = await gather(self.sources, prospect)
        attempt = Attempt()
        run_id = runs.new_run_id()
        try:
            opener, problem = await self._write(prospect, gathered, attempt)
        except RunError as error:  # the budget, the provider: recorded like any failure
            detail = "" if error.detail == error.reason else f": {error.detail}"
            opener, problem = None, f"{error.reason}{detail}"
        if opener is None:
            await self._close(run_id, prospect, gathered, attempt, None, key, problem)
            return Result("failed", problem)
        draft = await self._close(run_id, prospect, gathered, attempt, opener, key, "")
        if draft is None:
            return Result("already", "drafted meanwhile by another run")
        return Result("drafted", f"draft #{draft.id}", draft.id)

    async def _upsert(self, row: ProspectRow, key: str) -> tuple[Prospect, Draft | None]:
        lead = replace(row.lead, tags=(*row.lead.tags, PROSPECT_TAG))
        assert lead.email is not None
        async with self.db.transaction() as session:
            await import_lead(session, lead)
            contact = await find_by_ref(session, ContactRef("email", lead.email))
            if contact is None:  # import_lead stores the row's email: never expected
                raise RowRejected("the contact was not found by its email once stored")
            if contact.opted_out_at is not None:  # raised in the transaction: nothing changes
                raise RowRejected("the contact opted out of messages")
            existing = await drafts.by_key(session, key)
            company = str((contact.custom_fields or {}).get("company") or "")
            prospect = Prospect(
                contact_id=contact.id,
                name=contact.name,
                email=contact.email or lead.email,
                company=company,
                website=row.website,
                feed=row.feed,
                notes=row.notes,
            )
        return prospect, existing

    async def _write(
        self, prospect: Prospect, gathered: Gathered, attempt: Attempt
    ) -> tuple[Opener | None, str]:
        if not gathered.fetched:
            why = "; ".join(gathered.problems) or "the row has no website and no feed"
            return None, f"nothing fetched to ground an opener ({why})"
        async with self.db.reading() as session:
            await check_monthly_ceiling(session, self.agent.name, self.agent.budget)
        written = await self.writer.write(prospect, gathered.passages, attempt)
        return written.opener, written.problem

    async def _close(
        self,
        run_id: str,
        prospect: Prospect,
        gathered: Gathered,
        attempt: Attempt,
        opener: Opener | None,
        key: str,
        problem: str,
    ) -> Draft | None:
        """Write the run, its records and (with an opener) the draft, in one transaction."""
        async with self.db.transaction() as session:
            await runs.open_run(
                session,
                id=run_id,
                agent_name=self.agent.name,
                conversation_id=None,
                contact_id=prospect.contact_id,
                trigger=TRIGGER,
                started_by=self.started_by,
                provider=self.writer.provider.name,
                model=self.writer.model,
            )
            entries = [
                self._entry(run_id, "run_started", self._started(prospect)),
                self._entry(run_id, "research_sources", _sources_payload(gathered)),
                *(self._entry(run_id, kind, payload) for kind, payload in attempt.records),
            ]
            draft = None
            if opener is not None:
                draft = await self._draft(session, run_id, prospect, gathered, opener, key)
                if draft is not None:
                    entries.append(self._entry(run_id, "draft_created", _draft_payload(draft)))
            status = "finished" if draft is not None else "failed"
            reason = f"drafted #{draft.id}" if draft is not None else problem or "drafted before"
            entries.append(
                self._entry(run_id, "run_finished", self._finished(status, reason, attempt))
            )
            await self.audit.append_many(session, entries)
            await runs.finish_run(
                session,
                run_id,
                status=status,
                reason=reason,
                steps=attempt.steps,
                input_tokens=attempt.usage.input_tokens,
                output_tokens=attempt.usage.output_tokens,
                cost=attempt.cost,
            )
        log.info("research run %s for contact %s: %s", run_id, prospect.contact_id, reason)
        return draft

    async def _draft(
        self,
        session: Tx,
        run_id: str,
        prospect: Prospect,
        gathered: Gathered,
        opener: Opener,
        key: str,
    ) -> Draft | None:
        draft, created = await drafts.add_draft(
            session,
            key=key,
            kind="outreach",
            agent=self.agent.name,
            contact_id=prospect.contact_id,
            channel=EMAIL,
            text=opener.opener,
            reason="outreach",
            run_id=run_id,
            question=built_from(prospect, gathered),
            subject=opener.subject,
            sources=opener.sources,
        )
        if not created:
            return None
        await post_draft(session, draft)
        return draft

    def _entry(self, run_id: str, kind: str, payload: dict[str, Any]) -> Entry:
        return Entry(kind, payload, self.actor, run_id, None)

    def _started(self, prospect: Prospect) -> dict[str, Any]:
        return {
            "agent": self.agent.name,
            "trigger": TRIGGER,
            "started_by": self.started_by,
            "provider": self.writer.provider.name,
            "model": self.writer.model,
            "dry_run": False,
            "input": [{"text": f"prospect {prospect.name} <{prospect.email}>"}],
        }

    @staticmethod
    def _finished(status: str, reason: str, attempt: Attempt) -> dict[str, Any]:
        return {
            "status": status,
            "reason": reason,
            "steps": attempt.steps,
            "tokens": {"input": attempt.usage.input_tokens, "output": attempt.usage.output_tokens},
            "cost_usd": str(attempt.cost),
            "refused_tools": attempt.refused,
        }


def built_from(prospect: Prospect, gathered: Gathered) -> str:
    """What staff are told the opener was built from (the draft's `question`)."""
    parts = [f"{p.source} {p.url}" + (f" ({p.title})" if p.title else "") for p in gathered.fetched]
    if any(p.source == "notes" for p in gathered.passages):
        parts.append(f"notes: {' '.join(prospect.notes.split())}")
    text = "Researched from " + "; ".join(parts)
    if gathered.problems:
        text += ". Not read: " + "; ".join(gathered.problems)
    return text


def _sources_payload(gathered: Gathered) -> dict[str, Any]:
    return {
        "passages": [
            {"source": p.source, "url": p.url, "title": p.title, "chars": len(p.text)}
            for p in gathered.passages
        ],
        "problems": gathered.problems,
    }


def _draft_payload(draft: Draft) -> dict[str, Any]:
    return {
        "draft": draft.id,
        "kind": draft.kind,
        "subject": draft.subject,
        "text": draft.text,
        "sources": draft.sources,
    }


def default_sources(fetcher: Fetcher) -> list[Source]:
    """The row's notes, its website, its news feed: in that order."""
    return [NotesSource(), WebsiteSource(fetcher), FeedSource(fetcher)]


def writer_for(agent: AgentDefinition, providers: ProviderPool) -> OpenerWriter:
    """The agent's provider as configured; with the offline one, the extractive writer."""
    provider, model = providers.for_agent(agent)
    if isinstance(provider, OfflineProvider):
        provider = ExtractiveModel()
    secrets = providers.settings.secrets()
    return OpenerWriter(agent, provider, model, providers.price(model), secrets)
