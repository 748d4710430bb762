"""Every change of provider leaves an audit record and a log line; an opened breaker tells staff.

A breaker's transitions (opened, probing, closed, reopened) are the process's, not a run's:
they go on the system chain in a transaction of their own, right away, which costs a write
only when the state changes. A run served by another provider than its own is the run's:
that record is held with the run's others (`RunState.unwritten`) and written with its next
state change, so serving from the fallback adds no round trip to the run.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.providers.breaker import Transition
from agents.run_state import RunState
from bot.core.errors import ProviderError
from bot.core.settings import Settings
from bot.desk.staff import notify_staff
from bot.store.audit import AuditLog
from bot.store.db import Database
from bot.store.types import utcnow

log = logging.getLogger("agents.providers")
ACTOR = "engine"
KINDS = {
    "opened": "provider_circuit_opened",
    "probing": "provider_circuit_probe",
    "closed": "provider_circuit_closed",
    "reopened": "provider_circuit_reopened",
}
SWITCHED = "provider_switched"


class SwitchLog:
    """Records switches; until `attach` gives it the store (as the engine does), it logs only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database | None = None
        self.audit: AuditLog | None = None

    def attach(self, db: Database, audit: AuditLog) -> None:
        self.db, self.audit = db, audit

    async def transition(
        self,
        transition: Transition | None,
        run: RunState | None = None,
        error: ProviderError | None = None,
    ) -> None:
        """Audit and log a breaker's change of state; an opening also alerts staff, once."""
        if transition is None:
            return
        payload = self._payload(transition, run, error)
        level = logging.INFO if transition.change in ("probing", "closed") else logging.WARNING
        log.log(level, "%s circuit %s: %s", transition.provider, transition.change, payload)
        alert = self._alert(payload) if transition.change == "opened" else None
        await self._write(KINDS[transition.change], payload, alert)

    async def switched(
        self, run: RunState | None, served_by: str, model: str, was: str, reason: str
    ) -> None:
        """The run's calls now go to `served_by` (the fallback, or back to its own provider)."""
        payload = {"from": was, "to": served_by, "model": model, "reason": reason}
        log.warning("model calls switched from %s to %s: %s", was, served_by, reason)
        if run is not None:
            run.unwritten.append(run.entry(SWITCHED, payload))
        else:  # outside a run (a research writer) there is nothing to hold it with
            await self._write(SWITCHED, payload)

    def _payload(
        self, transition: Transition, run: RunState | None, error: ProviderError | None
    ) -> dict[str, Any]:
        return {
            "provider": transition.provider,
            "failures_in_a_row": transition.failures,
            "open_seconds": transition.open_seconds,
            "cooldown_seconds": self.settings.llm_breaker_cooldown_seconds,
            "fallback": self._fallback_for(transition.provider),
            "worker": self.settings.worker_id,
            "error": error.detail if error is not None else None,
            "seen_in_run": run.run_id if run is not None else None,
        }

    def _fallback_for(self, provider: str) -> str | None:
        fallback = self.settings.llm_fallback_provider
        return fallback if fallback != provider else None

    async def _write(self, kind: str, payload: dict[str, Any], alert: str | None = None) -> None:
        if self.db is None or self.audit is None:
            return
        try:
            async with self.db.transaction() as session:
                await self.audit.append(session, kind, payload, actor=ACTOR)
                if alert is not None:
                    # Keyed by the opening, so each opening alerts once and a retry not twice.
                    key = f"circuit-opened:{payload['provider']}:{payload['worker']}:{utcnow()}"
                    await notify_staff(
                        session,
                        key=key,
                        conversation_id=None,
                        contact_id=None,
                        text=alert,
                        kind="provider_alert",
                        meta={"provider": payload["provider"]},
                    )
        except Exception:
            # The record of a switch must not take the customer's run down with it; the log
            # line already says what happened.
            log.exception("could not record %s", kind)

    def _alert(self, payload: dict[str, Any]) -> str:
        provider, fallback = payload["provider"], payload["fallback"]
        cooldown = f"{payload['cooldown_seconds']:g}"
        head = (
            f"The model provider {provider} failed {payload['failures_in_a_row']} calls in a row "
            f"(worker {payload['worker']}; last error: {payload['error']})."
        )
        if fallback is not None:
            return (
                f"{head} Agents now use the fallback {fallback}. In {cooldown} s one call tests "
                f"{provider} again; if it succeeds, agents go back to {provider}."
            )
        return (
            f"{head} No LLM_FALLBACK_PROVIDER is set, so agents hand conversations to you until "
            f"{provider} answers again; one call tests it every {cooldown} s."
        )
