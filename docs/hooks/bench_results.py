"""mkdocs hook: the benchmarks page's figures, rendered from the bench's own JSON.

``scripts/bench-docs`` runs ``python -m bench --json docs/bench/latest.json`` and writes beside it
``latest.run.json`` (full or quick, the command, a note). Nothing on the page is typed by hand:

- ``<!-- generated: bench-run -->`` becomes a sentence naming the run (date, full or quick, machine);
- ``<!-- generated: bench-table -->`` becomes the table of every row, as ``python -m bench`` prints it;
- ``[[bench: SCENARIO | FIELD]]`` becomes one figure, and
  ``[[bench: SCENARIO | FIELD | OP | LIMIT]]`` that figure with "met" or "not met" against a goal.
  SCENARIO may end in ``*`` to match a prefix (row names carry counts that differ between quick and
  full runs); FIELD is ``ours``, ``baseline``, ``ratio`` or ``added`` (ours minus baseline).

A reference to a row that is not in the JSON, or matches more than one, fails the build.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "bench" / "latest.json"
RUN = ROOT / "docs" / "bench" / "latest.run.json"
RUN_MARK = "<!-- generated: bench-run -->"
TABLE_MARK = "<!-- generated: bench-table -->"
FIGURE = re.compile(
    r"\[\[bench:\s*(?P<scenario>[^|\]]+?)\s*\|\s*(?P<field>\w+)\s*"
    r"(?:\|\s*(?P<op>[<>]=?)\s*\|\s*(?P<limit>[-0-9.]+)\s*)?\]\]"
)
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

sys.path.insert(0, str(ROOT))  # bench/ is not installed: it ships with the checkout
from bench.common import Table, fmt  # noqa: E402  (needs the line above)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PluginError(
            f"benchmarks page: cannot read {path}: {exc} (scripts/bench-docs writes it)"
        ) from None


def _row(rows: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    if scenario.endswith("*"):
        found = [row for row in rows if str(row.get("scenario", "")).startswith(scenario[:-1])]
    else:
        found = [row for row in rows if row.get("scenario") == scenario]
    if len(found) != 1:
        raise PluginError(
            f"benchmarks page: {len(found)} rows of {RESULTS.name} match "
            f"{scenario!r}; expected exactly one"
        )
    return found[0]


def _value(row: dict[str, Any], field: str) -> float:
    if field == "added":
        value = None if row.get("baseline") is None else row["ours"] - row["baseline"]
    elif field in ("ours", "baseline", "ratio"):
        value = row.get(field)
    else:
        raise PluginError(
            f"benchmarks page: unknown field {field!r} (ours, baseline, ratio or added)"
        )
    if not isinstance(value, (int, float)):
        raise PluginError(f"benchmarks page: {row['scenario']!r} has no {field} figure")
    return value


def render_figure(match: re.Match[str], rows: list[dict[str, Any]]) -> str:
    value = _value(_row(rows, match["scenario"]), match["field"])
    if match["op"] is None:
        return fmt(float(value))
    met = OPS[match["op"]](value, float(match["limit"]))
    return f"{fmt(float(value))} (**{'met' if met else 'not met'}**)"


def render_run(results: dict[str, Any], run: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    kind = "quick" if run.get("quick") else "full"
    text = (
        f"This is the {kind} run of {results.get('when', 'an unknown date')} "
        f"(`{run.get('command', 'python -m bench')}`) on a machine with "
        f"{machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')}, "
        f"{machine.get('platform', 'unknown platform')}."
    )
    note = run.get("note")
    return text + (f" {note}" if note else "")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if RUN_MARK not in markdown and TABLE_MARK not in markdown and "[[bench:" not in markdown:
        return markdown
    results, run = _load(RESULTS), _load(RUN)
    rows = results.get("rows")
    if not isinstance(rows, list):
        raise PluginError(f"benchmarks page: {RESULTS} has no list of rows")
    markdown = markdown.replace(RUN_MARK, render_run(results, run))
    markdown = markdown.replace(TABLE_MARK, Table.from_rows(rows).render())
    markdown = FIGURE.sub(lambda match: render_figure(match, rows), markdown)
    if "[[bench:" in markdown:
        raise PluginError(
            f"benchmarks page: a [[bench: ...]] reference in {page.file.src_uri} "
            "is not of the form [[bench: SCENARIO | FIELD]] or "
            "[[bench: SCENARIO | FIELD | OP | LIMIT]]"
        )
    return markdown
