"""Status page response time with 100 peers and 1,000 agents and tools seen, against an empty
appliance in the same run.

    python -m bench.web [--quick] [--json results.json]

Both appliances run in one process inside a network namespace of its own (bench/web_probe.py
says how they are filled); GET /api/status, GET / and GET /metrics are timed from a separate
client process over keep-alive HTTP, rounds alternating between the two. Figures: median and
p99 per path, and their ratio to the empty appliance.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.common import median, percentile, ratio, suite_main
from bench.web_probe import PATHS
from tests.support.netns import Lan, netns_unavailable


def probe(rounds: int, requests: int) -> dict[str, Any]:
    reason = netns_unavailable()
    if reason:
        raise SystemExit(f"web bench needs a network namespace: {reason}")
    lan = Lan().create()
    try:
        namespace = lan.add()
        done = namespace.run(
            namespace.python("-m", "bench.web_probe", str(rounds), str(requests)), timeout=600
        )
        if done.returncode != 0:
            raise SystemExit(f"web probe failed: {done.stderr.strip()[-800:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        lan.close()


def run(quick: bool) -> list[dict[str, Any]]:
    result = probe(*((2, 50) if quick else (5, 200)))
    samples = result["samples"]
    seen = f"{result['peers']} peers, {result['agents']} agents, {result['tools']} tools listed"
    rows = []
    for path in PATHS:
        full, empty = samples[f"full {path}"], samples[f"empty {path}"]
        for label, pick in (("median", median), ("p99", lambda v: percentile(v, 0.99))):
            ours, baseline = pick(full), pick(empty)
            rows.append(
                {
                    "scenario": f"GET {path} {label}, {seen}",
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ratio(ours, baseline),
                    "unit": "ms (empty appliance)",
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "the empty appliance", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
