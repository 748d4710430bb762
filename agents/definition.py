"""The agent definition: what an agent is for, how it behaves, what it may do and spend.

Definitions are written as YAML (see `agents/templates/`), validated here, and stored in the
database. Validation errors name the field and the reason.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.core.errors import ConfigurationError
from bot.core.providers import ProviderName

TOOL_NAMES = (
    "send_message",
    "get_contact",
    "get_recent_messages",
    "update_deal_stage",
    "schedule_meeting",
    "find_meeting_times",
    "record_answer",
    "handoff_to_human",
    "search_kb",
    "tag_conversation",
)
"""Tools an agent may be given; `finish` is always available."""

DEFAULT_HANDOFF_TRIGGERS = ("refund", "legal", "urgent", "escalate", "manager", "human")
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
"""A conversation category: lower case, digits, - and _, like how-to or billing."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Spending limits; a run that reaches one stops and hands off."""

    max_tokens_per_run: int = Field(20_000, ge=100, description="Input+output tokens per run")
    max_cost_per_run: Decimal = Field(Decimal("0.05"), ge=0, description="USD per run")
    monthly_ceiling: Decimal = Field(Decimal("20"), ge=0, description="USD per calendar month")


class Question(_Strict):
    """A qualifying question; the answer is recorded under `key` in the contact's fields."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    ask: str = Field(min_length=3, max_length=500)


class PhraseRule(_Strict):
    """Points for an answer that contains one of `match`: whole words or phrases, any case."""

    match: list[str] = Field(min_length=1, description="Words or phrases, e.g. [asap, this week]")
    points: int = Field(ge=-1000, le=1000, description="Added to the score (may be negative)")

    @field_validator("match")
    @classmethod
    def _no_blanks(cls, match: list[str]) -> list[str]:
        cleaned = [" ".join(phrase.split()) for phrase in match]
        if not all(cleaned):
            raise ValueError("a phrase to match cannot be empty")
        return cleaned


class RangeRule(_Strict):
    """Points for an answer whose first number lies in `min`..`max` (both included)."""

    min: float | None = Field(None, description="Lowest number that scores; omit for no floor")
    max: float | None = Field(None, description="Highest number that scores; omit for no cap")
    points: int = Field(ge=-1000, le=1000, description="Added to the score (may be negative)")

    @model_validator(mode="after")
    def _a_range(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("a range's min is above its max")
        return self


class AnswerRule(_Strict):
    """How one recorded answer scores. Of `ranges` and of `choices` only the first match
    counts (they are alternatives); every matching `keywords` rule adds its points."""

    ranges: list[RangeRule] = Field([], description="For numbers in the answer (team size...)")
    choices: list[PhraseRule] = Field([], description="Alternatives, first match wins")
    keywords: list[PhraseRule] = Field([], description="Each rule that matches adds its points")


class Scoring(_Strict):
    """The lead-scoring rubric: the score is computed in code from what was recorded (answers,
    tags, lead source), never set by the model, and decides what happens once every question
    is answered."""

    answers: dict[str, AnswerRule] = Field({}, description="Rules per question key")
    tags: dict[str, int] = Field({}, description="Points per contact tag (any case)")
    sources: dict[str, int] = Field({}, description="Points per lead source (any case)")
    threshold: int = Field(description="At or above: qualified, offered meeting times")
    below: Literal["nurture", "handoff"] = Field(
        "handoff", description="Under the threshold: tag for nurture, or hand off to a person"
    )
    nurture_tag: str = Field("nurture", min_length=1, max_length=60)


HOLDING_MESSAGE = (
    "Thanks for your question. I want to be sure you get the right answer, so a colleague is "
    "checking it and will reply here shortly."
)


class KnowledgeBase(_Strict):
    """Grounding, enforced in code: a reply must cite an article that search_kb returned in
    the run, and the best retrieval score among the cited articles must reach `min_confidence`.
    Such a reply is sent with the article's title and link; any other becomes a draft for
    staff (with `holding_message` to the customer) or a handoff."""

    min_confidence: float = Field(
        0.5, ge=0, le=1, description="Lowest search score (0..1) a sent answer may rest on"
    )
    below: Literal["draft", "handoff"] = Field(
        "draft",
        description="An answer that is not grounded enough: draft it for staff, or hand off",
    )
    holding_message: str = Field(
        HOLDING_MESSAGE,
        min_length=1,
        max_length=1000,
        description="Sent to the customer while staff look at a draft",
    )
    cite_sources: bool = Field(True, description="Append the cited articles' titles and links")


class PolicyRule(_Strict):
    """A forbidden commitment: outgoing text matching `pattern` (a regex) is blocked."""

    name: str = Field(min_length=1, max_length=60)
    pattern: str = Field(min_length=1, max_length=500)
    explain: str = Field("", max_length=300, description="Told to the model when it trips")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


DURATION = re.compile(r"^\s*(\d+)\s*(m|h|d|w)\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """'90m', '24h', '5d', '2w' as a timedelta."""
    found = DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration like 90m, 24h, 5d or 2w")
    return timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])


def _check_duration(text: str | None) -> str | None:
    if text is not None and parse_duration(text) <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    return text


def _check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # 'America' is a directory
        raise ValueError(f"unknown time zone {zone!r}") from None
    return zone


class Conditions(_Strict):
    """Checked in code when a proactive run is due; a contact that fails one is skipped."""

    inactive_days: int | None = Field(
        None, ge=1, description="No message either way (and, per deal, no deal activity) for N days"
    )
    replied: bool | None = Field(
        None, description="The contact has (true) or has not (false) written since the cause"
    )
    min_events: dict[str, int] = Field(
        {}, description="At least N events of each type since the cause, e.g. {active_day: 1}"
    )
    max_events: dict[str, int] = Field(
        {}, description="At most N events of each type since the cause (low activity)"
    )


class ProactiveTask(_Strict):
    """What a run with no message to answer is for."""

    instruction: str = Field(
        "",
        max_length=2000,
        description="Told to the model: why this run started and what to do",
    )
    message: str | None = Field(
        None,
        max_length=2000,
        description="What the offline provider sends: {first_name}, {name}, {company} filled in",
    )
    when: Conditions = Conditions()


class InboundTrigger(_Strict):
    type: Literal["inbound"] = "inbound"


NEXT_STEPS = {
    "new": "make first contact",
    "qualified": "book a discovery call",
    "proposal": "follow up on the proposal",
    "negotiation": "agree the open terms",
}


class ScheduleTrigger(ProactiveTask):
    """A clock: `cron` (five fields) or `every` (a duration), in `timezone`.

    `for_each` says what one firing runs: `contact` or `deal` (one run per matching one, under
    the agent's `match` and `when`), or `agent` (one run for the whole agent; only the built-in
    `report: stale_deals` for now, which sends every deal owner their stale deals).
    """

    type: Literal["schedule"] = "schedule"
    cron: str | None = Field(None, description="Five-field crontab, e.g. '0 2 * * *'")
    every: str | None = Field(None, description="An interval instead of cron: 30m, 6h, 1d")
    timezone: str = "UTC"
    for_each: Literal["agent", "contact", "deal"] = "contact"
    report: Literal["stale_deals"] | None = None
    stale_days: int = Field(14, ge=1, description="report stale_deals: days without activity")
    next_steps: dict[str, str] = Field(
        default_factory=lambda: dict(NEXT_STEPS),
        description="report stale_deals: the suggested next step per stage",
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str | None) -> str | None:
        if cron is not None and len(cron.split()) != 5:
            raise ValueError("cron must have five fields: minute hour day month weekday")
        return cron

    _every = field_validator("every")(_check_duration)
    _zone = field_validator("timezone")(_check_zone)

    @model_validator(mode="after")
    def _one_clock(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron and every")
        if self.for_each == "agent" and self.report is None:
            raise ValueError("for_each: agent needs a report (stale_deals)")
        if self.report is not None and self.for_each != "agent":
            raise ValueError("a report runs once for the whole agent: use for_each: agent")
        return self


class EventTrigger(ProactiveTask):
    """An event on a contact (`crmbot event`, POST /events) wakes the agent for that contact,
    at once or `after` a delay; `when` is checked when it is due."""

    type: Literal["event"] = "event"
    event: str = Field(min_length=1, max_length=80, description="e.g. trial.started")
    after: str | None = Field(None, description="Wait this long first: 30m, 24h, 5d")

    _after = field_validator("after")(_check_duration)


class FollowUp(ProactiveTask):
    """One follow-up to a contact who went quiet with questions unanswered, then nothing.

    Due `after` the agent's last message; any message from the contact cancels it."""

    after: str = Field("2d", description="How long a silence earns the follow-up")

    _after = field_validator("after")(_check_duration)


Trigger = Annotated[InboundTrigger | ScheduleTrigger | EventTrigger, Field(discriminator="type")]


def _inbound_only() -> list[Trigger]:
    return [InboundTrigger()]


class Match(_Strict):
    """Routing rule: the agent takes conversations that match every field given."""

    channels: list[Literal["telegram", "email", "console"]] = []
    tags: list[str] = Field([], description="The contact has at least one of these tags")
    stages: list[str] = Field([], description="The contact's open deal is in one of these stages")
    min_score: int | None = None
    max_score: int | None = None


class AgentDefinition(_Strict):
    """A narrow agent: one goal, a persona, rules, tools, limits and what starts it."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique slug, e.g. lead-qualifying")
    description: str = Field("", max_length=500)
    goal: str = Field(min_length=10, max_length=2000, description="What done looks like")
    persona: str = Field(min_length=3, max_length=2000, description="Who the agent is, its tone")
    rules: list[str] = Field([], description="Behaviour rules, one sentence each")
    handoff_triggers: list[str] = Field(
        list(DEFAULT_HANDOFF_TRIGGERS), description="Words that hand off before any model call"
    )
    tools: list[Literal[TOOL_NAMES]] = Field(  # type: ignore[valid-type]
        ["send_message", "get_contact", "get_recent_messages", "handoff_to_human"]
    )
    provider: ProviderName | None = Field(None, description="Default: LLM_PROVIDER")
    model: str | None = Field(None, description="Default: LLM_MODEL or the provider's default")
    max_steps: int = Field(8, ge=1, le=50, description="Model calls per run")
    budget: Budget = Budget()
    triggers: list[Trigger] = Field(default_factory=_inbound_only)
    match: Match = Match()
    priority: int = Field(0, description="Higher wins when several agents' rules match")
    assigned_tags: list[str] = Field(
        [], description="Contacts with one of these tags are assigned to this agent by an admin"
    )
    questions: list[Question] = []
    categories: list[Annotated[str, Field(pattern=CATEGORY_PATTERN)]] = Field(
        [], description="What a conversation may be about, for tag_conversation: how-to, billing..."
    )
    forbidden: list[PolicyRule] = Field([], description="Extra output-policy rules")
    follow_up: FollowUp | None = Field(
        None, description="One follow-up after a silence in the middle of the questions"
    )
    scoring: Scoring | None = Field(
        None, description="Lead-scoring rubric and what to do once the questions are answered"
    )
    knowledge_base: KnowledgeBase | None = Field(
        None, description="Ground replies in search_kb results (citation and confidence)"
    )
    facts: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        [],
        max_length=100,
        description="Statements the agent may make; amounts and plan names in them are allowed",
    )
    review: list[Literal["pricing", "contract"]] = Field(
        [], description="Replies about these topics go to staff as drafts, even when grounded"
    )

    @field_validator("handoff_triggers")
    @classmethod
    def _clean_triggers(cls, triggers: list[str]) -> list[str]:
        cleaned = [t.strip().lower() for t in triggers if t.strip()]
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _categories_usable(self) -> AgentDefinition:
        if "tag_conversation" in self.tools and not self.categories:
            raise ValueError("the tag_conversation tool needs categories to choose from")
        if len(self.categories) != len(set(self.categories)):
            raise ValueError("categories must be unique")
        return self

    @model_validator(mode="after")
    def _grounding_usable(self) -> AgentDefinition:
        if self.knowledge_base is not None and "search_kb" not in self.tools:
            raise ValueError("knowledge_base needs the search_kb tool in tools")
        if self.review and "send_message" not in self.tools:
            raise ValueError("review applies to replies: it needs the send_message tool")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> AgentDefinition:
        if self.questions and "record_answer" not in self.tools:
            raise ValueError("questions need the record_answer tool in tools")
        keys = [q.key for q in self.questions]
        if len(keys) != len(set(keys)):
            raise ValueError("question keys must be unique")
        unknown = sorted(set(self.scoring.answers) - set(keys)) if self.scoring else []
        if unknown:
            raise ValueError(f"scoring.answers names no question: {', '.join(unknown)}")
        return self

    @property
    def reacts_to_inbound(self) -> bool:
        return any(t.type == "inbound" for t in self.triggers)

    def schedules(self) -> list[tuple[str, ScheduleTrigger]]:
        """(job name, trigger) of each schedule trigger: the agent's name, then `name#2`..."""
        found = [t for t in self.triggers if isinstance(t, ScheduleTrigger)]
        return [(self.name if n == 1 else f"{self.name}#{n}", t) for n, t in enumerate(found, 1)]

    def event_triggers(self, event: str) -> list[tuple[int, EventTrigger]]:
        """(index in `triggers`, trigger) of each trigger that `event` starts."""
        return [
            (n, t)
            for n, t in enumerate(self.triggers)
            if isinstance(t, EventTrigger) and t.event == event
        ]

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _describe(error: ValidationError, source: str) -> ConfigurationError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "definition"
    reason = str(first["msg"]).removeprefix("Value error, ")
    return ConfigurationError(f"{source}: field {where}: {reason}")


def parse_definition(data: Any, source: str = "agent definition") -> AgentDefinition:
    """Validate a mapping as an agent definition; `ConfigurationError` names field and reason."""
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source}: expected a mapping of fields, got {type(data).__name__}"
        )
    try:
        return AgentDefinition.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc, source) from None


def load_definition_file(path: Path) -> AgentDefinition:
    """Read and validate one YAML agent definition."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read YAML: {exc}") from None
    return parse_definition(data, str(path))


def update_field(definition: AgentDefinition, field: str, value: Any) -> AgentDefinition:
    """A copy with one field changed, validated as a whole."""
    data = definition.model_dump(mode="json")
    if field not in data:
        raise ConfigurationError(f"{definition.name}: unknown field {field!r}")
    data[field] = value
    return parse_definition(data, definition.name)


TEMPLATES_DIR = Path(__file__).parent / "templates"
