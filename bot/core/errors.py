"""The two roots of crmbot's errors.

`ConfigurationError` is for mistakes a person can fix (a bad setting, an invalid agent
definition, a malformed command): the CLI prints it as one line. `RunError` and its children
are failures of an agent run; the engine turns them into a handoff, never into silence.
Control-flow results (finish, handoff) are values, not exceptions.
"""

from __future__ import annotations


class CrmbotError(Exception):
    """Base of every error crmbot raises on purpose."""


class ConfigurationError(CrmbotError):
    """A setting, definition or command is wrong; the message names it and says why."""


class DatabaseUnavailable(ConfigurationError):
    """The database cannot be reached or opened (wrong host, server down, bad path)."""


class NotFoundError(ConfigurationError):
    """A named thing (agent, contact, run) does not exist."""


class RunError(CrmbotError):
    """An agent run cannot go on; `reason` is what the handoff and the audit record say."""

    reason: str = "run failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason


class StepLimitExceeded(RunError):
    reason = "step limit reached"


class BudgetExceeded(RunError):
    reason = "budget exceeded"


class RunTimeout(RunError):
    reason = "run timed out"


class RepeatedToolCall(RunError):
    reason = "the same tool call was repeated"


class GuardrailTripped(RunError):
    reason = "output policy blocked the reply twice"


class ModelBehaviorError(RunError):
    reason = "the model kept misbehaving"


class ProviderError(RunError):
    """The model provider failed after retries (network, 5xx, rate limit, bad request)."""

    reason = "model provider unavailable"

    def __init__(self, detail: str = "", *, retryable: bool = False) -> None:
        super().__init__(detail)
        self.retryable = retryable
