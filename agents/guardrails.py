"""Guardrails enforced in code around the model, never by asking it nicely.

- Handoff triggers are matched on the inbound text before any model call.
- Every outgoing text passes the output policy (forbidden commitments, any money amount).
- Text in which the model promises a person ("I'll pass you to a colleague") is treated as a
  handoff even when the model forgot to call the tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agents.definition import PolicyRule


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    """Why an outgoing text was blocked."""

    rule: str
    explain: str
    excerpt: str


_I_WE = r"\b(?:we|i|our team)\s*(?:'ll|will|can|could|would|shall|'d|are able to|am able to)"
_DEFAULT_RULES: tuple[PolicyRule, ...] = (
    PolicyRule(
        name="money-amount",
        pattern=r"(?i)(?:[$€£¥]\s?\d|\b\d[\d,.]*\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b)",
        explain="Do not state prices or amounts; a salesperson confirms pricing.",
    ),
    PolicyRule(
        name="discount-promise",
        pattern=rf"(?i)(?:{_I_WE}\s+(?:\w+\s+){{0,4}}?(?:give|offer|provide|apply|get)\s+"
        r"(?:\w+\s+){0,3}?(?:discount|price cut|deal)|\b\d{1,3}\s?%\s*(?:off|discount))",
        explain="Never promise discounts or special deals.",
    ),
    PolicyRule(
        name="refund-promise",
        pattern=rf"(?i)(?:{_I_WE}\s+(?:\w+\s+){{0,3}}?(?:refund|reimburse|credit)|"
        r"\b(?:full|guaranteed|100%)\s+refund|refund policy is|money[- ]back)",
        explain="Never promise refunds or credits; refunds are decided by staff.",
    ),
    PolicyRule(
        name="price-match",
        pattern=r"(?i)(?:\bmatch\s+(?:any|their|a|the|your)\s+(?:[\w'’]+\s+){0,2}?price|"
        r"\bprice[- ]match|\bbeat\s+any\s+(?:\w+\s+)?price|\bcheapest\b)",
        explain="Never promise to match or beat prices.",
    ),
    PolicyRule(
        name="guarantee",
        pattern=r"(?i)\b(?:we|i)\s+(?:can\s+)?guarantee\b|\bguaranteed\s+(?:results|roi|uptime)",
        explain="Never guarantee outcomes; describe what the product does instead.",
    ),
)


class OutputPolicy:
    """Checks outgoing text against the default rules plus an agent's own."""

    def __init__(self, extra: Iterable[PolicyRule] = ()) -> None:
        self.rules = [(rule, re.compile(rule.pattern)) for rule in (*_DEFAULT_RULES, *extra)]

    def check(self, text: str) -> PolicyViolation | None:
        for rule, pattern in self.rules:
            found = pattern.search(text)
            if found:
                start = max(found.start() - 20, 0)
                return PolicyViolation(rule.name, rule.explain, text[start : found.end() + 20])
        return None


def find_trigger(text: str, triggers: Iterable[str]) -> str | None:
    """The first handoff trigger that appears in `text` as a word (plural/-ed/-ly allowed)."""
    for trigger in triggers:
        pattern = r"\b" + re.escape(trigger) + r"(?:s|es|ed|ly|ing)?\b"
        if re.search(pattern, text, flags=re.IGNORECASE):
            return trigger
    return None


_PEOPLE = (
    r"(?:colleague|human|person|teammate|team member|specialist|manager|someone|"
    r"representative|rep|staff|support team|sales team|real agent|live agent|expert)"
)
_HANDOFF_LANGUAGE = re.compile(
    r"(?i)(?:\b(?:pass|transfer|connect|hand|forward|escalat|put|rout)\w*\s+"
    r"(?:you|this|your\s+\w+|it)\s+(?:\w+\s+){0,4}?(?:to|with|through to)\s+(?:\w+\s+){0,3}?"
    + _PEOPLE
    + r"|\b(?:a|one of our|our)\s+(?:\w+\s+)?"
    + _PEOPLE
    + r"s?\s+will\s+(?:reply|respond|get back|contact|be in touch|follow up|reach out|help))"
)


def promises_handoff(text: str) -> bool:
    """True when the text tells the contact a person will take over."""
    return bool(_HANDOFF_LANGUAGE.search(text))
