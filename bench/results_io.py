"""The results protocol every benchmark shares, so that one runner can make a table and chart.

Each benchmark module runs as `python -m bench.NAME [--json PATH] [--quick]`; besides the
figures it prints, with --json it writes a JSON list of `Record`s to PATH.

A record's `target` is a short string. These forms are machine-checkable (see `check_target`):

- `"< N"`, `"<= N"`, `"> N"`, `">= N"`, `"== N"`: compare the value with the number N;
- `"N"`: a bare number means the value must equal it (`"0"`: nothing duplicated);
- `"within P% of N"`: the value is within P per cent of the number N, either side.

Any other target (e.g. `"within 10% of limit"`, when the limit is not a number the record
carries) is shown as written and judged by a person: `check_target` returns None for it.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict


class Record(TypedDict):
    """One measured figure of one benchmark case."""

    benchmark: str
    """The benchmark module's name, e.g. "telegram"."""
    case: str
    """The configuration measured, e.g. "crmbot" or "floor"."""
    metric: str
    """What was measured, e.g. "throughput" or "p99_ms"."""
    value: float
    unit: str
    """The value's unit as shown in tables, e.g. "msg/s", "ms", "" for a ratio."""
    target: str | None
    """What the value should be, in the little grammar of this module's docstring."""
    backend: str | None
    """"sqlite", "postgresql", or None when no database is involved."""


def write_results(path: str | None, records: list[Record]) -> None:
    """Write the records to `path` as a JSON list; do nothing when `path` is None."""
    if path is None:
        return
    Path(path).write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


def read_results(path: str | Path) -> list[Record]:
    """Read a list of records written by `write_results`."""
    records: list[Record] = json.loads(Path(path).read_text(encoding="utf-8"))
    return records


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"^\s*(<=|>=|==|<|>)?\s*({_NUMBER})\s*$")
_WITHIN = re.compile(rf"^\s*within\s+({_NUMBER})\s*%\s+of\s+({_NUMBER})\s*$", re.IGNORECASE)


def check_target(value: float, target: str | None) -> bool | None:
    """Whether `value` meets `target`; None when there is no target or it is not checkable."""
    if target is None or math.isnan(value):
        return None
    if match := _COMPARISON.match(target):
        compare = _COMPARISONS[match.group(1) or "=="]
        return compare(value, float(match.group(2)))
    if match := _WITHIN.match(target):
        share, reference = float(match.group(1)) / 100, float(match.group(2))
        return abs(value - reference) <= share * abs(reference)
    return None


@dataclass
class Collector:
    """Collects one benchmark's records for one backend, printing each as it comes."""

    benchmark: str
    backend: str | None
    records: list[Record] = field(default_factory=list)
    number_format: str = ",.1f"

    def add(self, case: str, metric: str, value: float, unit: str, target: str | None) -> None:
        shown = f" (target {target})" if target else ""
        unit_shown = f" {unit}" if unit else ""
        print(f"  {case}: {metric} {value:{self.number_format}}{unit_shown}{shown}")
        self.records.append(
            Record(
                benchmark=self.benchmark,
                case=case,
                metric=metric,
                value=round(value, 3),
                unit=unit,
                target=target,
                backend=self.backend,
            )
        )
