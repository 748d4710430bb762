"""The engine: one run of one agent for one conversation, start to audited end.

It routes the conversation, opens (or resumes) the run record, checks handoff triggers and the
monthly ceiling before any model call, runs the loop under the wall-clock cap, and turns every
stop condition into a handoff with the reason, so a run never ends in silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agents.budget import check_monthly_ceiling
from agents.definition import AgentDefinition, parse_duration
from agents.guardrails import OutputPolicy, find_trigger
from agents.loop import AgentLoop, Finish, Handoff, LoopInput
from agents.messages import Usage
from agents.proactive_text import proactive_note, render_message
from agents.prompt import history_messages, system_prompt
from agents.providers.pool import ProviderPool
from agents.router import choose_agent
from agents.run_state import OnClose, RunOutcome, RunState
from agents.tools.contact import contact_card
from agents.tools.executor import ToolExecutor
from bot.core.errors import RunError, RunTimeout
from bot.core.hours import BusinessHours
from bot.core.logs import log_context
from bot.core.settings import Settings
from bot.desk.handoff import hand_off
from bot.desk.proactive import ProactiveRules, is_opt_out
from bot.desk.staff import copy_to_staff
from bot.store import runs
from bot.store.audit import AuditLog, Entry
from bot.store.contacts import get_contact
from bot.store.conversations import get_conversation
from bot.store.db import Database, Tx
from bot.store.deals import open_deal
from bot.store.inbox import mark_handled, run_history
from bot.store.models import Message
from bot.store.types import utcnow
from bot.store.wakeups import NewWakeup, add_wakeups

log = logging.getLogger("agents.engine")
HISTORY_LIMIT = 20


async def _nothing_on_close(session: Tx, outcome: RunOutcome) -> None:
    del session, outcome


class AgentRunner:
    """Runs agents for conversations; callers hold the conversation's lease."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        settings: Settings,
        providers: ProviderPool | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.audit, self.settings = db, audit, settings
        self.providers = providers or ProviderPool(settings)
        self.providers.record_switches(db, audit)
        self.executor = ToolExecutor(db, audit)
        self.hours = BusinessHours(settings.business_hours, settings.business_timezone)
        self.loop = AgentLoop(self.executor, self._record_model_step)
        self.rules = ProactiveRules(settings, audit)
        self.clock = clock

    async def handle_inbound(
        self, conversation_id: int, pending: list[Message], *, on_close: OnClose | None = None
    ) -> RunOutcome:
        """Answer the conversation's pending inbound messages with one run.

        `on_close` runs in the transaction that ends the run, after its messages are marked
        answered: the dispatcher looks for newer messages there and gives the lease back when
        there are none, so ending a run and releasing the conversation is one commit.
        """
        ids = [m.id for m in pending]
        on_close = on_close or _nothing_on_close
        # Opening a run only reads (routing, caps, what the model will see): the run's row
        # and first records are written with its first state change, so no commit here.
        async with self.db.reading() as session:
            conversation = await get_conversation(session, conversation_id)
            state, contact_id, channel = (
                conversation.state,
                conversation.contact_id,
                conversation.channel,
            )
            agent, sticky = None, conversation.current_agent
            if state == "bot":
                contact = await get_contact(session, contact_id)
                agent = await choose_agent(
                    session, conversation, contact, self.settings.default_agent
                )
            if agent is not None:
                run = await self._open_run(
                    session,
                    agent,
                    conversation_id,
                    contact_id,
                    channel,
                    "inbound",
                    "contact",
                    pending,
                )
                run.on_close = on_close
                if agent.name != sticky:
                    run.remember_agent = agent.name
                text = "\n".join(m.text for m in pending)
                run.question = text
                prepared: LoopInput | RunError | None = None
                if (
                    not run.resumed_with_reply
                    and find_trigger(text, agent.handoff_triggers) is None
                ):
                    try:
                        prepared = await self._perceive_in(session, run, True, None, ids)
                    except RunError as error:
                        prepared = error
        await self._note_opt_outs(conversation_id, contact_id, pending)
        if state != "bot":
            return await self._pass_to_staff(conversation_id, pending, state, on_close)
        if agent is None:
            return await self._no_agent(conversation_id, ids, on_close)
        if run.resumed_with_reply:
            # Killed after its reply was queued and before its messages were marked: the
            # reply stands. Messages that came after it get a run of their own.
            summary = "resumed after a restart: its reply had already been sent"
            return await self._close(run, Finish(summary), sorted(run.answering))
        return await self._execute(run, ids, trigger_text=text, can_reply=True, prepared=prepared)

    async def _note_opt_outs(
        self, conversation_id: int, contact_id: int, pending: list[Message]
    ) -> None:
        """ "stop" ends automatic messages for good; the message is still answered."""
        said = next((m.text for m in pending if is_opt_out(m.text)), None)
        if said is None:
            return
        async with self.db.transaction() as session:
            await self.rules.record_opt_out(
                session, contact_id, conversation_id, said, self.clock()
            )

    async def handle_proactive(
        self,
        conversation_id: int,
        agent: AgentDefinition,
        *,
        trigger: str,
        started_by: str,
        cause: dict[str, Any],
        task: dict[str, Any],
        on_close: OnClose | None = None,
    ) -> RunOutcome:
        """A run with no message to answer (a schedule, an event, a follow-up); the caller
        holds the conversation's lease. `task` holds the trigger's `instruction` and the
        offline `message`. What it sends is automatic: the proactive rules apply at send time.

        `on_close` runs in the transaction that ends the run (a run skipped before it opened
        has none): the wake-up that started it is marked done with it.
        """
        async with self.db.reading() as session:
            conversation = await get_conversation(session, conversation_id)
            if conversation.state != "bot":
                return RunOutcome(
                    None, agent.name, "skipped", f"conversation is {conversation.state}"
                )
            if await runs.unfinished_run(session, conversation_id, inbound=True) is not None:
                # A stopped worker's run, resumed by the next pass over pending messages: the
                # proactive run waits for it (`postponed`) rather than being dropped.
                return RunOutcome(None, agent.name, "postponed", "an inbound run is unfinished")
            run = await self._open_run(
                session,
                agent,
                conversation_id,
                conversation.contact_id,
                conversation.channel,
                trigger,
                started_by,
                [],
                cause=cause,
            )
            run.task, run.on_close = task, on_close
            if run.messages_sent:
                # Resumed after its worker died with its message queued: that message was the
                # run's work. Going on would let the model word it anew and send it twice.
                summary = "resumed after a restart: its message had already been sent"
                return await self._close(run, Finish(summary), [])
            note = proactive_note(cause, str(task.get("instruction") or ""))
            prepared: LoopInput | RunError
            try:
                prepared = await self._perceive_in(session, run, True, note, [])
            except RunError as error:
                prepared = error
        return await self._execute(
            run, [], trigger_text="", can_reply=True, extra_user_text=note, prepared=prepared
        )

    async def _pass_to_staff(
        self, conversation_id: int, pending: list[Message], state: str, on_close: OnClose
    ) -> RunOutcome:
        """The conversation is with people: staff get the customer's messages, no run."""
        ids = [m.id for m in pending]
        async with self.db.transaction() as session:
            for message in pending:
                await copy_to_staff(session, message)
            await mark_handled(session, ids, None)
            await self.audit.append(
                session,
                "inbound_while_with_staff",
                {"message_ids": ids},
                actor="engine",
                conversation_id=conversation_id,
            )
            outcome = RunOutcome(None, None, "skipped", f"conversation is {state}")
            await on_close(session, outcome)
        return outcome

    async def _no_agent(
        self, conversation_id: int, ids: list[int], on_close: OnClose
    ) -> RunOutcome:
        async with self.db.transaction() as session:
            await mark_handled(session, ids, None)
            await hand_off(
                session,
                self.audit,
                hours=self.hours,
                conversation_id=conversation_id,
                reason="no agent is enabled for this conversation",
                actor="engine",
            )
            outcome = RunOutcome(None, None, "handed_off", "no agent available")
            await on_close(session, outcome)
        return outcome

    async def run_dry(
        self,
        agent: AgentDefinition,
        conversation_id: int,
        contact_id: int,
        channel: str,
        text: str,
        started_by: str,
    ) -> tuple[RunOutcome, RunState]:
        """A test run that shows the plan and tool calls and sends nothing."""
        async with self.db.transaction() as session:
            run = await self._open_run(
                session,
                agent,
                conversation_id,
                contact_id,
                channel,
                "test",
                started_by,
                [],
                dry_run=True,
            )
        outcome = await self._execute(
            run, [], trigger_text=text, can_reply=True, extra_user_text=text
        )
        return outcome, run

    async def _open_run(
        self,
        session: Tx,
        agent: AgentDefinition,
        conversation_id: int,
        contact_id: int,
        channel: str,
        trigger: str,
        started_by: str,
        pending: list[Message],
        dry_run: bool = False,
        cause: dict[str, Any] | None = None,
    ) -> RunState:
        provider, model = self.providers.for_agent(agent)
        row = (
            None
            if dry_run
            else await runs.unfinished_run(
                session,
                conversation_id,
                inbound=trigger == "inbound",
                started_by=None if trigger == "inbound" else started_by,
            )
        )
        resumed = row is not None
        run = RunState(
            run_id=row.id if row is not None else runs.new_run_id(),
            agent=agent,
            contact_id=contact_id,
            conversation_id=conversation_id,
            channel=channel,
            trigger=trigger,
            started_by=started_by,
            policy=OutputPolicy(agent.forbidden, self.settings.secrets()),
            dry_run=dry_run,
            hours=self.hours,
            semantic=self.providers.semantic() if "search_kb" in agent.tools else None,
        )
        given = pending
        if resumed:
            await self._restore(session, run, model)
            if run.resumed_with_reply:
                given = [m for m in pending if m.id in run.answering] or pending
                run.answering = frozenset(m.id for m in given)
        else:
            run.unopened = {
                "agent_name": agent.name,
                "conversation_id": conversation_id,
                "contact_id": contact_id,
                "trigger": trigger,
                "started_by": started_by,
                "provider": provider.name,
                "model": model,
            }
        # Held back with the run's row: written by the run's first state change.
        run.unwritten.append(
            Entry(
                "run_resumed" if resumed else "run_started",
                {
                    "agent": agent.name,
                    "trigger": trigger,
                    "started_by": started_by,
                    "provider": provider.name,
                    "model": model,
                    "dry_run": dry_run,
                    "input": [
                        {"id": m.id, "text": m.text, "attachments": m.attachments} for m in given
                    ],
                    **({"cause": cause} if cause else {}),
                },
                started_by,
                run.run_id,
                conversation_id,
            )
        )
        return run

    async def _restore(self, session: Tx, run: RunState, model: str) -> None:
        """A resumed run keeps counting where it stopped: its caps survive the restart."""
        done = await runs.progress(session, run.run_id)
        # The worker died during some step, maybe in a model call it was charged for but never
        # recorded: count that step too, so a crash can never buy a run extra steps.
        run.steps, run.messages_sent = done.steps + 1, done.messages_sent
        run.usage = Usage(done.input_tokens, done.output_tokens)
        run.cost = self.providers.price(model).cost(run.usage)
        run.policy_blocks, run.call_counts = done.policy_blocks, dict(done.call_counts)
        run.answering = frozenset(done.inputs)
        run.resumed_with_reply = run.trigger == "inbound" and done.messages_sent > 0
        log.warning(
            "run %s resumed after a restart at step %s (%s message(s) already sent)",
            run.run_id,
            run.steps,
            run.messages_sent,
        )

    async def _execute(
        self,
        run: RunState,
        message_ids: list[int],
        *,
        trigger_text: str,
        can_reply: bool,
        extra_user_text: str | None = None,
        prepared: LoopInput | RunError | None = None,
    ) -> RunOutcome:
        with log_context(run=run.run_id, agent=run.agent.name, contact=run.contact_id):
            return await self._execute_logged(
                run,
                message_ids,
                trigger_text=trigger_text,
                can_reply=can_reply,
                extra_user_text=extra_user_text,
                prepared=prepared,
            )

    async def _execute_logged(
        self,
        run: RunState,
        message_ids: list[int],
        *,
        trigger_text: str,
        can_reply: bool,
        extra_user_text: str | None,
        prepared: LoopInput | RunError | None,
    ) -> RunOutcome:
        """Run the loop on `prepared` (what the model sees, read when the run opened) or on a
        fresh perception; a trigger word hands off before any of it."""
        trigger = find_trigger(trigger_text, run.agent.handoff_triggers)
        closed: list[RunOutcome] = []

        async def close_in(session: Tx, result: Finish | Handoff) -> None:
            closed.append(await self._close_in(session, run, result, message_ids))

        try:
            if trigger is not None:
                result: Finish | Handoff = Handoff(
                    f"the contact wrote the trigger word '{trigger}'"
                )
                guardrail = {"trigger": trigger, "model_called": False}
                run.unwritten.append(run.entry("guardrail", guardrail))
            else:
                if isinstance(prepared, RunError):
                    raise prepared
                given = prepared or await self._perceive(
                    run, can_reply, extra_user_text, message_ids
                )
                async with asyncio.timeout(self.settings.run_timeout_seconds):
                    result = await self.loop.run(run, given, close=close_in)
            if closed:  # ended with its reply, in the reply's transaction
                self._log_closed(run, closed[0])
                return closed[0]
        except TimeoutError:
            result = self._stopped(
                run, RunTimeout(f"no result after {self.settings.run_timeout_seconds:g}s")
            )
        except RunError as error:
            result = self._stopped(run, error)
        except Exception as error:  # a bug must not silence the conversation
            log.exception("run %s crashed", run.run_id)
            result = Handoff(f"internal error: {type(error).__name__}")
        return await self._close(run, result, message_ids)

    def _stopped(self, run: RunState, error: RunError) -> Handoff:
        log.warning("run %s stopped: %s", run.run_id, error.detail)
        return Handoff(
            f"{error.reason}: {error.detail}" if error.detail != error.reason else error.reason
        )

    async def _perceive(
        self, run: RunState, can_reply: bool, extra_user_text: str | None, answering: list[int]
    ) -> LoopInput:
        async with self.db.transaction() as session:
            return await self._perceive_in(session, run, can_reply, extra_user_text, answering)

    async def _perceive_in(
        self,
        session: Tx,
        run: RunState,
        can_reply: bool,
        extra_user_text: str | None,
        answering: list[int],
    ) -> LoopInput:
        """What the model sees: the contact, the open deal and the run's history, within the
        monthly ceiling (`BudgetExceeded` otherwise)."""
        await check_monthly_ceiling(session, run.agent.name, run.agent.budget)
        contact = await get_contact(session, run.contact_id)
        card = contact_card(contact)
        deal = await open_deal(session, contact.id)
        card["open_deal"] = {"stage": deal.stage, "title": deal.title} if deal else None
        history = await run_history(session, run.conversation_id, answering, HISTORY_LIMIT)
        provider, model = self.providers.for_agent(run.agent, run)
        hints: dict[str, Any] = {
            "agent": run.agent.name,
            "questions": [q.model_dump() for q in run.agent.questions],
            "answers": dict(contact.custom_fields or {}),
            "tools": list(run.agent.tools),
        }
        if run.agent.knowledge_base is not None:
            hints["grounded"] = {"min_confidence": run.agent.knowledge_base.min_confidence}
        if run.task is not None:
            message = run.task.get("message")
            hints["task"] = {
                "instruction": run.task.get("instruction") or "",
                "message": render_message(str(message), contact) if message else None,
            }
        run.system_prompt = system_prompt(run.agent, card, run.channel)
        return LoopInput(
            provider=provider,
            model=model,
            system=run.system_prompt,
            messages=history_messages(history, extra_user_text),
            price=self.providers.price(model),
            price_of=self.providers.price,
            hints=hints,
            can_reply=can_reply and "send_message" in run.agent.tools,
        )

    async def _close(
        self, run: RunState, result: Finish | Handoff, message_ids: list[int]
    ) -> RunOutcome:
        async with self.db.transaction() as session:
            outcome = await self._close_in(session, run, result, message_ids)
        self._log_closed(run, outcome)
        return outcome

    def _log_closed(self, run: RunState, outcome: RunOutcome) -> None:
        log.info("run %s (%s) %s: %s", run.run_id, run.agent.name, outcome.status, outcome.reason)

    async def _close_in(
        self, session: Tx, run: RunState, result: Finish | Handoff, message_ids: list[int]
    ) -> RunOutcome:
        """End the run in `session`: its held records, the handoff if any, its messages
        marked answered, the follow-up, the run row and its record, and `on_close`."""
        status = "handed_off" if isinstance(result, Handoff) else "finished"
        reason = result.reason if isinstance(result, Handoff) else result.summary
        await run.write_held(session, self.audit)
        if isinstance(result, Handoff) and not run.dry_run:
            await hand_off(
                session,
                self.audit,
                hours=self.hours,
                conversation_id=run.conversation_id,
                reason=result.reason,
                summary=result.summary,
                run_id=run.run_id,
                actor=run.actor,
                tell_customer=run.trigger == "inbound",
            )
        await mark_handled(session, message_ids, run.run_id)
        if status == "finished" and run.trigger == "inbound" and message_ids:
            await self._plan_follow_up(session, run, max(message_ids))
        await runs.finish_run(
            session,
            run.run_id,
            status=status,
            reason=reason,
            steps=run.steps,
            input_tokens=run.usage.input_tokens,
            output_tokens=run.usage.output_tokens,
            cost=run.cost,
        )
        await self.audit.append(
            session,
            "run_finished",
            {
                "status": status,
                "reason": reason,
                "steps": run.steps,
                "tokens": {"input": run.usage.input_tokens, "output": run.usage.output_tokens},
                "cost_usd": str(run.cost),
            },
            actor=run.actor,
            run_id=run.run_id,
            conversation_id=run.conversation_id,
        )
        outcome = RunOutcome(run.run_id, run.agent.name, status, reason)
        if run.on_close is not None:
            await run.on_close(session, outcome)
        return outcome

    async def _plan_follow_up(self, session: Tx, run: RunState, last_inbound: int) -> None:
        """One follow-up if the agent asked and the contact has questions left to answer;
        keyed by the message it answered, so a silence earns one, and a reply cancels it."""
        follow_up = run.agent.follow_up
        if follow_up is None or run.dry_run or run.messages_sent == 0:
            return
        contact = await get_contact(session, run.contact_id)
        answered = set((contact.custom_fields or {}).keys())
        if run.agent.questions and all(q.key in answered for q in run.agent.questions):
            return
        now = self.clock()
        await add_wakeups(
            session,
            [
                NewWakeup(
                    key=f"follow-up:{run.conversation_id}:{last_inbound}",
                    agent_name=run.agent.name,
                    trigger={"type": "follow_up", **follow_up.model_dump(mode="json")},
                    contact_id=run.contact_id,
                    cause={"follow_up_of": run.run_id},
                    since=now,
                    due_at=now + parse_duration(follow_up.after),
                    cancel_on_reply=True,
                )
            ],
        )

    async def _record_model_step(self, run: RunState, payload: dict[str, Any]) -> None:
        """Held back for the transaction of what the model asked for (a tool call, the end of
        the run): a model call changes nothing by itself, so it needs no commit of its own."""
        run.unwritten.append(run.entry("model_call", payload))
