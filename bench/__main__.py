"""Every benchmark in one run, one table: ``python -m bench [--quick] [--json FILE] [--only NAME]``.

Each scenario runs beside its raw baseline in the same run (see each module); this only runs
them in turn and puts their rows together. Network-namespace scenarios (web, federation, footprint)
need root; they are reported as skipped otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.common import Table, write_json

SUITES = (
    "bus",
    "readers",
    "bridge",
    "bridge_routes",
    "uplinks",
    "outbox",
    "web",
    "federation",
    "footprint",
)
OPT_IN = ("soak",)  # run only when named with --only: the soak takes ten minutes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute each)")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    parser.add_argument(
        "--only",
        choices=SUITES + OPT_IN,
        action="append",
        help="run only these suites (repeatable); soak runs only when named",
    )
    args = parser.parse_args(argv)
    rows: list[dict[str, object]] = []
    for name in args.only or SUITES:
        module = importlib.import_module(f"bench.{name}")
        try:
            rows += module.run(args.quick)
        except SystemExit as skipped:  # a suite that cannot run here says why
            rows.append({"scenario": f"{name}: skipped", "unit": str(skipped)})
        sys.stdout.write(f"done: {name}\n")
        sys.stdout.flush()
    sys.stdout.write(Table.from_rows(rows).render() + "\n")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
