"""The shared benchmark helpers: the numbers they compute and how they print them."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from bench.common import Outcome, Table, fmt, median, percentile, ratio, suite_main, write_json


def test_median_and_percentile_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert median(values) == 3.0 and median([1.0, 2.0]) == 1.5
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0 and percentile(values, 0.0) == 1.0
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert math.isnan(median([])) and math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_ratio_and_formatting() -> None:
    assert ratio(3.0, 4.0) == 0.75 and math.isnan(ratio(1.0, 0.0))
    assert fmt(34792.4) == "34,792" and fmt(0.2345) == "0.23" and fmt(12) == "12"
    assert fmt(math.nan) == "-" and fmt("x") == "x"


def test_table_is_markdown_with_aligned_columns() -> None:
    text = Table(["path", "msg/s"]).add("raw", 1234.5).add("bus->MQTT", 0.5).render()
    assert text.splitlines() == [
        "| path      | msg/s |",
        "|-----------|------:|",
        "| raw       | 1,234 |",
        "| bus->MQTT |  0.50 |",
    ]
    with pytest.raises(ValueError):
        Table(["a"]).add(1, 2)


def test_table_from_benchmark_rows_names_the_baseline() -> None:
    rows = [
        {
            "scenario": "64 B",
            "ours": 800_000.0,
            "baseline": 700_000.0,
            "ratio": 8 / 7,
            "unit": "msg/s",
        },
        {"scenario": "skipped", "unit": "needs root"},
    ]
    lines = Table.from_rows(rows, baseline="bare proxy").render().splitlines()
    assert lines[2] == "| 64 B     | 800,000 |  700,000 |  1.14 |      msg/s |"
    assert lines[3] == "| skipped  |       - |        - |     - | needs root |"
    assert lines[-1] == "baseline: bare proxy"


def test_write_json_turns_nan_into_null(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    write_json(path, [{"rate": math.nan, "ok": 1.5, "nested": [math.nan]}])
    document = json.loads(path.read_text())
    assert document["rows"] == [{"rate": None, "ok": 1.5, "nested": [None]}]
    assert document["machine"]["cpus"] >= 1 and document["when"].endswith("Z")


ROW = {"scenario": "s", "ours": 1.0, "baseline": 2.0, "ratio": 0.5, "unit": "x"}


def _run(quick: bool) -> list[dict[str, object]]:
    return [{**ROW, "scenario": f"quick={quick}"}]


def test_a_suite_alone_prints_the_table_and_keeps_the_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        suite_main(_run, "the baseline", "doc", ["--quick", "--json", str(tmp_path / "r.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "quick=True" in out and out.rstrip().endswith("baseline: the baseline")
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["scenario"] == "quick=True"


def test_a_suite_alone_takes_its_own_options_and_says_why_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, default=64)

    def alone(args: argparse.Namespace) -> Outcome:
        if args.size == 0:
            raise SystemExit("needs a size")
        return Outcome(
            [ROW], text=f"size {args.size}\n", document={"rows": [ROW], "size": args.size}
        )

    path = tmp_path / "r.json"
    assert (
        suite_main(
            _run, "b", "doc", ["--size", "5", "--json", str(path)], options=options, measure=alone
        )
        == 0
    )
    assert capsys.readouterr().out == "size 5\n"
    assert json.loads(path.read_text())["rows"] == {"rows": [ROW], "size": 5}
    assert suite_main(_run, "b", "doc", ["--size", "0"], options=options, measure=alone) == 1
    assert capsys.readouterr().err == "tests.test_bench_common: needs a size\n"
