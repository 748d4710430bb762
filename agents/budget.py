"""Token and money accounting: per-run caps and the monthly ceiling per agent.

Prices are USD per million tokens. An unknown model is charged at the highest price we know,
so a typo in a model name can never switch the budget off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from agents.definition import Budget
from agents.messages import Usage
from agents.run_state import RunState
from bot.core.errors import BudgetExceeded
from bot.store import runs
from bot.store.db import Tx
from bot.store.types import utcnow

MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def cost(self, usage: Usage) -> Decimal:
        return (
            Decimal(usage.input_tokens) * self.input_per_mtok
            + Decimal(usage.output_tokens) * self.output_per_mtok
        ) / MTOK


# Longest matching prefix wins. Figures are list prices; override with LLM_PRICE_* settings.
PRICES: dict[str, Price] = {
    "offline": Price(Decimal(0), Decimal(0)),
    "gpt-4o-mini": Price(Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": Price(Decimal("2.50"), Decimal("10")),
    "gpt-4.1-mini": Price(Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1": Price(Decimal("2"), Decimal("8")),
    "o3": Price(Decimal("2"), Decimal("8")),
    "claude-3-5-haiku": Price(Decimal("0.80"), Decimal("4")),
    "claude-3-5-sonnet": Price(Decimal("3"), Decimal("15")),
    "claude-sonnet": Price(Decimal("3"), Decimal("15")),
    "claude-opus": Price(Decimal("15"), Decimal("75")),
    "gemini-2.0-flash": Price(Decimal("0.10"), Decimal("0.40")),
    "gemini-2.5-flash": Price(Decimal("0.30"), Decimal("2.50")),
    "gemini-2.5-pro": Price(Decimal("1.25"), Decimal("10")),
}
FALLBACK = max(PRICES.values(), key=lambda p: p.output_per_mtok)


def price_for(model: str, override: Price | None = None) -> Price:
    if override is not None:
        return override
    matches = [prefix for prefix in PRICES if model.startswith(prefix)]
    return PRICES[max(matches, key=len)] if matches else FALLBACK


def charge(run: RunState, usage: Usage, price: Price, budget: Budget) -> None:
    """Add one call's usage to the run; raise `BudgetExceeded` once a per-run cap is passed."""
    run.usage = run.usage + usage
    run.cost += price.cost(usage)
    if run.usage.total > budget.max_tokens_per_run:
        raise BudgetExceeded(
            f"token budget exceeded: {run.usage.total} > {budget.max_tokens_per_run} tokens"
        )
    if run.cost > budget.max_cost_per_run:
        raise BudgetExceeded(
            f"cost budget exceeded: ${run.cost:.4f} > ${budget.max_cost_per_run} per run"
        )


def month_start(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def spent_this_month(session: Tx, agent_name: str) -> Decimal:
    return await runs.cost_since(session, agent_name, month_start())


async def check_monthly_ceiling(session: Tx, agent_name: str, budget: Budget) -> None:
    """Refuse to start a run when the agent's spend this month has reached its ceiling."""
    spent = await spent_this_month(session, agent_name)
    if spent >= budget.monthly_ceiling:
        raise BudgetExceeded(
            f"monthly spend ceiling reached: ${spent:.2f} of ${budget.monthly_ceiling}"
        )
