"""Shared benchmark helpers: medians, percentiles, a plain-text table, JSON output.

Every benchmark here prints its baseline beside our figure and the ratio; these helpers keep the
numbers and their presentation the same across benchmarks.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values (a run that delivered nothing shows as such)."""
    items = list(values)
    return statistics.median(items) if items else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` (0..1) of the values lie, nearest-rank method."""
    if not values:
        return math.nan
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must be between 0 and 1")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


def fmt(value: Any, digits: int = 2) -> str:
    """Numbers for people: thousands grouped, floats rounded, NaN as a dash."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Table:
    """A plain-text table: ``Table(["a", "b"]).add(1, 2.5).render()``."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> Table:
        if len(cells) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([fmt(cell) for cell in cells])
        return self

    def render(self) -> str:
        widths = [max(len(row[i]) for row in [self.columns, *self.rows])
                  for i in range(len(self.columns))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(cell.rjust(width) if index else cell.ljust(width)
                             for index, (cell, width) in enumerate(zip(cells, widths))).rstrip()

        rule = "  ".join("-" * width for width in widths)
        return "\n".join([line(self.columns), rule, *(line(row) for row in self.rows)]) + "\n"


def write_json(path: str | os.PathLike[str], rows: Any) -> None:
    """Results as JSON (NaN written as null), for CI artefacts and README figures."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value
    Path(path).write_text(json.dumps(clean(rows), indent=2) + "\n", encoding="utf-8")
