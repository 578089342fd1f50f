"""What every benchmark shares: robust statistics, the results table, JSON output."""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was really measured, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


@dataclass
class Table:
    """scenario | ours | baseline | ratio, printed as Markdown so README can carry it as is."""

    columns: tuple[str, ...] = ("scenario", "ours", "baseline", "ratio", "unit")
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], baseline: str = "") -> Table:
        return cls(rows=list(rows), note=f"baseline: {baseline}" if baseline else "")

    def add(self, **row: Any) -> Table:
        self.rows.append(row)
        return self

    def render(self) -> str:
        lines = [f"| {' | '.join(self.columns)} |", f"|{'---|' * len(self.columns)}"]
        lines += [f"| {' | '.join(_fmt(row.get(c)) for c in self.columns)} |" for row in self.rows]
        if self.note:
            lines.append(f"\n{self.note}")
        return "\n".join(lines)


def write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    """Results with enough context (machine, time) to compare runs later."""
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"python": platform.python_version(), "cpus": _cpus(),
                            "platform": platform.platform()},
                "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _cpus() -> int:
    import os
    return os.cpu_count() or 0
