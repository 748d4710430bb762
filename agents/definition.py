"""The agent definition: what an agent is for, how it behaves, what it may do and spend.

Definitions are written as YAML (see `agents/templates/`), validated here, and stored in the
database. Validation errors name the field and the reason.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

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
    "record_answer",
    "handoff_to_human",
)
"""Tools an agent may be given; `finish` is always available."""

DEFAULT_HANDOFF_TRIGGERS = ("refund", "legal", "urgent", "escalate", "manager", "human")
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


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


class PolicyRule(_Strict):
    """A forbidden commitment: outgoing text matching `pattern` (a regex) is blocked."""

    name: str = Field(min_length=1, max_length=60)
    pattern: str = Field(min_length=1, max_length=500)
    explain: str = Field("", max_length=300, description="Told to the model when it trips")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        import re

        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


class InboundTrigger(_Strict):
    type: Literal["inbound"] = "inbound"


class ScheduleTrigger(_Strict):
    type: Literal["schedule"] = "schedule"
    cron: str = Field(description="Five-field crontab, e.g. '0 2 * * *'")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError("cron must have five fields: minute hour day month weekday")
        return cron


class EventTrigger(_Strict):
    type: Literal["event"] = "event"
    event: str = Field(min_length=1, max_length=80, description="e.g. trial.inactive_24h")


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
    forbidden: list[PolicyRule] = Field([], description="Extra output-policy rules")

    @field_validator("handoff_triggers")
    @classmethod
    def _clean_triggers(cls, triggers: list[str]) -> list[str]:
        cleaned = [t.strip().lower() for t in triggers if t.strip()]
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _consistent(self) -> AgentDefinition:
        if self.questions and "record_answer" not in self.tools:
            raise ValueError("questions need the record_answer tool in tools")
        keys = [q.key for q in self.questions]
        if len(keys) != len(set(keys)):
            raise ValueError("question keys must be unique")
        return self

    @property
    def reacts_to_inbound(self) -> bool:
        return any(t.type == "inbound" for t in self.triggers)

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
