"""Footprint: idle RSS, idle CPU and start-to-healthy with every service enabled.

The appliance runs inside a network namespace of its own (mDNS never reaches the real LAN),
next to a Mosquitto in the same namespace, so the bridge, discovery, certificates and the web
are all really running. The floor it is compared with is a bare libzmq proxy process: what a
Python process with pyzmq costs before any feature. Run: ``python -m bench.footprint``.
"""

from __future__ import annotations

import json
import sys

from bench.common import median, suite_main
from tests.support.netns import Lan, netns_unavailable

GOALS = {"idle_rss_mb": 60.0, "idle_cpu_pct": 1.0, "start_to_healthy_s": 1.5}  # the units
MIB = 2**20


def run(quick: bool) -> list[dict[str, object]]:
    reason = netns_unavailable()
    if reason:
        raise SystemExit(f"footprint bench needs network namespaces: {reason}")
    repeats, window = (2, 5.0) if quick else (5, 10.0)
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        lan = Lan().create()
        try:
            namespace = lan.add()
            done = namespace.run(
                namespace.python("-m", "bench.footprint_probe", str(window)), timeout=120
            )
            if done.returncode != 0:
                raise SystemExit(f"footprint probe failed: {done.stderr.strip()[-500:]}")
            for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                samples.setdefault(key, []).append(value)
        finally:
            lan.close()
    return [
        {
            "scenario": "idle RSS, everything enabled",
            "ours": median(samples["idle_rss_mib"]),
            "baseline": median(samples["bare_proxy_rss_mib"]),
            "ratio": median(samples["idle_rss_mib"]) / median(samples["bare_proxy_rss_mib"]),
            "unit": f"MiB (goal ≤ {GOALS['idle_rss_mb']:g} MB = {GOALS['idle_rss_mb'] * 1e6 / MIB:.1f} MiB)",
        },
        {
            "scenario": "idle RSS: private (anonymous) part",
            "ours": median(samples["idle_rss_anon_mib"]),
            "baseline": None,
            "ratio": None,
            "unit": "MiB",
        },
        {
            "scenario": "idle RSS: mapped library files (shared, reclaimable)",
            "ours": median(samples["idle_rss_file_mib"]),
            "baseline": None,
            "ratio": None,
            "unit": "MiB",
        },
        {
            "scenario": "idle RSS: Redis, RabbitMQ and Kafka clients, not loaded with only MQTT",
            "ours": median(samples["client_libraries_mib"]),
            "baseline": None,
            "ratio": None,
            "unit": "MiB they would add if a disabled uplink imported them",
        },
        {
            "scenario": "idle CPU, everything enabled",
            "ours": median(samples["idle_cpu_pct"]),
            "baseline": median(samples["bare_proxy_idle_cpu_pct"]),
            "ratio": None,
            "unit": f"% of one core (goal ≤ {GOALS['idle_cpu_pct']:g})",
        },
        {
            "scenario": "start to healthy (/healthz 200)",
            "ours": median(samples["start_to_healthy_s"]),
            "baseline": None,
            "ratio": None,
            "unit": f"s (goal ≤ {GOALS['start_to_healthy_s']:g})",
        },
    ]


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "a bare libzmq proxy process", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
