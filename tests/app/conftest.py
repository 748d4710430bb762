from __future__ import annotations

import pytest

from bot.app.admin import AdminCommands
from tests.support.harness import Harness


@pytest.fixture
def admins(harness: Harness) -> AdminCommands:
    return AdminCommands(harness.db, harness.app.audit, harness.app.runner)
