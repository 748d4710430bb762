"""Choosing the agent for a conversation.

Order: an agent an admin assigned to the contact (directly, or through one of its tags), then
the conversation's current agent (the choice is sticky), then the highest-priority agent whose
rules match, then the default agent.
A disabled agent is skipped at every step.
"""

from __future__ import annotations

import logging

from agents import catalog
from agents.catalog import StoredAgent
from agents.definition import AgentDefinition, Match
from bot.core.errors import NotFoundError
from bot.store.db import Tx
from bot.store.deals import open_deal
from bot.store.models import Contact, Conversation

log = logging.getLogger("agents.router")


async def _enabled(session: Tx, name: str | None) -> AgentDefinition | None:
    if not name:
        return None
    try:
        stored = await catalog.get(session, name)
    except NotFoundError:
        log.warning("agent %s is referenced but does not exist", name)
        return None
    return stored.definition if stored.enabled else None


def matches(rule: Match, channel: str | None, contact: Contact, stage: str | None) -> bool:
    """True when every field the rule sets holds for a contact on `channel` (None: a contact
    we cannot reach on any channel, which a rule naming channels never matches)."""
    checks = [
        not rule.channels or channel in rule.channels,
        not rule.tags or bool(set(rule.tags) & set(contact.tags or [])),
        not rule.stages or stage in rule.stages,
        rule.min_score is None or contact.lead_score >= rule.min_score,
        rule.max_score is None or contact.lead_score <= rule.max_score,
    ]
    return all(checks)


def _by_rules(
    agents: list[StoredAgent], conversation: Conversation, contact: Contact, stage: str | None
) -> AgentDefinition | None:
    candidates = [
        a.definition
        for a in agents
        if a.enabled
        and a.definition.reacts_to_inbound
        and matches(a.definition.match, conversation.channel, contact, stage)
    ]
    candidates.sort(key=lambda d: (-d.priority, d.name))
    return candidates[0] if candidates else None


def _by_tag(agents: list[StoredAgent], contact: Contact) -> AgentDefinition | None:
    tags = set(contact.tags or [])
    assigned = [
        a.definition for a in agents if a.enabled and tags & set(a.definition.assigned_tags)
    ]
    assigned.sort(key=lambda d: (-d.priority, d.name))
    return assigned[0] if assigned else None


async def choose_agent(
    session: Tx, conversation: Conversation, contact: Contact, default_agent: str
) -> AgentDefinition | None:
    """The agent for this conversation; None if no agent is available.

    Reads only: the caller stores the choice on the conversation when it differs from
    `conversation.current_agent` (the run does, with its first state change).
    """
    agents = await catalog.list_all(session)
    chosen = await _enabled(session, contact.assigned_agent) or _by_tag(agents, contact)
    chosen = chosen or await _enabled(session, conversation.current_agent)
    if chosen is None:
        deal = await open_deal(session, contact.id)
        chosen = _by_rules(agents, conversation, contact, deal.stage if deal else None)
    return chosen or await _enabled(session, default_agent)
