"""The README and .env.example describe every setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {name.upper() for name in Settings.model_fields}


def test_env_example_lists_exactly_the_settings() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert listed == SETTINGS


def test_readme_configuration_table_covers_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert {name for name in SETTINGS if f"| `{name}` |" not in readme} == set()


def test_readme_names_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
