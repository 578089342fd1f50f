"""What every benchmark shares: robust statistics, the results table, JSON output.

Every benchmark prints its baseline beside our figure and the ratio; these helpers keep the
numbers and their presentation the same across benchmarks, as Markdown tables README can carry.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "ours", "baseline", "ratio", "unit")


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values (a run that delivered nothing shows as such)."""
    items = list(values)
    return float(statistics.median(items)) if items else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0..1): a value really measured, never interpolated."""
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must be between 0 and 1")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


def fmt(value: Any, digits: int = 2) -> str:
    """Numbers for people: thousands grouped, floats rounded, NaN and None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Table:
    """A Markdown table whose columns are also aligned as plain text.

    ``Table(["a", "b"]).add(1, 2.5)`` for cells in order, ``Table.from_rows(rows)`` for the
    scenario/ours/baseline/ratio/unit rows every benchmark module returns.
    """

    def __init__(self, columns: Sequence[str] = COLUMNS, note: str = "") -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []
        self.note = note

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], baseline: str = "") -> Table:
        table = cls(COLUMNS, note=f"baseline: {baseline}" if baseline else "")
        for row in rows:
            table.add(*(row.get(column) for column in COLUMNS))
        return table

    def add(self, *cells: Any) -> Table:
        if len(cells) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([fmt(cell) for cell in cells])
        return self

    def render(self) -> str:
        widths = [
            max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))
        ]

        def line(cells: Sequence[str]) -> str:
            return (
                "| "
                + " | ".join(
                    cell.rjust(width) if index else cell.ljust(width)
                    for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
                )
                + " |"
            )

        rule = (
            "|"
            + "|".join(
                "-" * (width + 1) + (":" if index else "-") for index, width in enumerate(widths)
            )
            + "|"
        )
        lines = [line(self.columns), rule, *(line(row) for row in self.rows)]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


def write_json(path: str | os.PathLike[str], rows: Any) -> None:
    """Results with enough context (machine, time) to compare runs later; NaN written as null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count() or 0,
            "platform": platform.platform(),
        },
        "rows": clean(rows),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Outcome:
    """What a suite run alone prints and keeps: ``text`` instead of the standard table, and
    ``document`` instead of ``rows`` in the JSON file, where the suite has more to say."""

    rows: list[dict[str, Any]]
    text: str | None = None
    document: Any = None


def suite_main(
    run: Callable[[bool], list[dict[str, Any]]],
    baseline: str,
    description: str,
    argv: Sequence[str] | None = None,
    *,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    measure: Callable[[argparse.Namespace], Outcome] | None = None,
) -> int:
    """``python -m bench.<suite> [--quick] [--json FILE] [options]``: one suite alone, as
    ``python -m bench`` runs it (``run(quick)``), unless the suite adds ``options`` and a
    ``measure`` that reads them. A suite that cannot run here says why and exits 1."""
    module = sys.modules[run.__module__]
    name = module.__spec__.name if module.__spec__ is not None else run.__module__
    parser = argparse.ArgumentParser(
        prog=f"python -m {name}", description=description.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    try:
        outcome = measure(args) if measure is not None else Outcome(run(args.quick))
    except SystemExit as skipped:
        if not isinstance(skipped.code, str):
            raise
        sys.stderr.write(f"{name}: {skipped.code}\n")
        return 1
    sys.stdout.write(
        outcome.text
        if outcome.text is not None
        else Table.from_rows(outcome.rows, baseline=baseline).render()
    )
    if args.json:
        write_json(args.json, outcome.rows if outcome.document is None else outcome.document)
    return 0
