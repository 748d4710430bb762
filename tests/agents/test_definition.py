"""Agent definitions: the shipped templates are valid; invalid ones name field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.definition import TEMPLATES_DIR, load_definition_file, parse_definition, update_field
from bot.core.errors import ConfigurationError
from tests.support.harness import BASE_AGENT

SHIPPED = {
    "lead-qualifying",
    "pipeline-hygiene",
    "support-deflection",
    "trial-onboarding",
    "outbound-research",
}


def test_the_five_shipped_templates_are_valid() -> None:
    names = {load_definition_file(p).name for p in TEMPLATES_DIR.glob("*.yaml")}
    assert names == SHIPPED


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"name": "Has Spaces"}, "name", "pattern"),
        ({"max_steps": 0}, "max_steps", "greater than or equal to 1"),
        ({"tools": ["send_message", "rm_rf"]}, "tools.1", "Input should be"),
        ({"budget": {"monthly_ceiling": -1}}, "budget.monthly_ceiling", "greater than"),
        (
            {"triggers": [{"type": "schedule", "cron": "daily"}]},
            "triggers.0.schedule.cron",
            "five fields",
        ),
        (
            {"forbidden": [{"name": "x", "pattern": "(unclosed"}]},
            "forbidden.0.pattern",
            "regular expression",
        ),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"goal": None}, "goal", "valid string"),
    ],
)
def test_invalid_definition_names_field_and_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_definition({**BASE_AGENT, **change}, "agent.yaml")
    message = str(caught.value)
    assert message.startswith(f"agent.yaml: field {field}:"), message
    assert reason in message


def test_questions_need_the_record_answer_tool() -> None:
    with pytest.raises(ConfigurationError, match="record_answer"):
        parse_definition({**BASE_AGENT, "questions": [{"key": "size", "ask": "How big?"}]})


def test_unreadable_yaml_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigurationError, match="cannot read YAML"):
        load_definition_file(broken)


def test_update_field_validates_the_whole_definition() -> None:
    definition = parse_definition(BASE_AGENT)
    assert update_field(definition, "max_steps", 3).max_steps == 3
    with pytest.raises(ConfigurationError, match="max_steps"):
        update_field(definition, "max_steps", 500)
    with pytest.raises(ConfigurationError, match="unknown field"):
        update_field(definition, "colour", "red")
