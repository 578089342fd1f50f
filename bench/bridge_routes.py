"""Bridge route scaling: per-message cost with 1, 100 and 1,000 routes.

    python -m bench.bridge_routes [--quick] [--json results.json]

The bridge resolves a topic through topic trees (cost grows with topic depth, not with the number
of routes) and caches the answer per topic. To show the tree and not the cache, every message
here goes to a topic of its own, so each one is a cache miss. The extra routes are "filler"
routes of both directions (``site<k>/#`` and ``site<k>/+/sensor/+``) that a scan would have to
test for every message; no traffic matches them.

Two measurements, each with one route per direction as the baseline, interleaved per repeat:

- dispatch: ``RouteTable.outbound``/``inbound`` in this process, microseconds per new topic;
- end to end: three appliances (1, 100, 1,000 routes) on one Mosquitto, bus->MQTT and
  MQTT->bus bursts of QoS 0 messages, workers as in bench/bridge.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.app import Edge
from argentic_edge.bridge.routes import RouteTable
from argentic_edge.config import EdgeConfig
from bench.bridge import measure, worker
from bench.common import Outcome, median, ratio, suite_main
from tests.support.bridge import edge_config
from tests.support.brokers import Mosquitto

SIZES = (1, 100, 1000)  # routes in all; the baseline has one route each way


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int  # messages per end-to-end burst, each on its own topic
    lookups: int  # distinct topics resolved per dispatch measurement


FULL = Plan(repeats=5, count=20_000, lookups=20_000)
QUICK = Plan(repeats=2, count=5_000, lookups=5_000)


def route_list(size: int, root: str) -> list[dict[str, Any]]:
    """The measured route each way under ``root``, then fillers up to ``size`` routes."""
    routes: list[dict[str, Any]] = [
        {"topic": f"{root}/out/#", "direction": "out", "qos": 0},
        {"topic": f"{root}/in/#", "direction": "in", "qos": 0},
    ]
    for k in range(size - len(routes)):
        topic = f"site{k}/#" if k % 2 == 0 else f"site{k}/+/sensor/+"
        routes.append({"topic": f"{root}-{topic}", "direction": "both", "qos": 0})
    return routes


def config(size: int, broker_port: int) -> EdgeConfig:
    return edge_config(
        broker_port,
        node=f"routes{size}",
        messaging={"high_water_mark": 100_000},
        bridge={
            "routes": route_list(size, f"n{size}"),
            "buffer": {"max_messages": 1_000_000, "max_bytes": 1 << 30},
        },
    )


def dispatch_us(size: int, lookups: int) -> tuple[float, float, float]:
    """Build a RouteTable of ``size`` routes; seconds to build, then microseconds per new topic
    resolved bus->MQTT and MQTT->bus (every topic distinct: each lookup misses the cache)."""
    cfg = config(size, 1883)
    started = time.perf_counter()
    table = RouteTable(cfg.bridge.routes, cfg.bridge.mqtt)
    built = time.perf_counter() - started
    root = f"n{size}"
    out_topics = [f"{root}/out/x/{i}" for i in range(lookups)]
    in_topics = [f"{root}/in/x/{i}" for i in range(lookups)]
    started = time.perf_counter()
    for topic in out_topics:
        if not table.outbound(topic):
            raise RuntimeError(f"no route for {topic}")
    out_us = (time.perf_counter() - started) / lookups * 1e6
    started = time.perf_counter()
    for topic in in_topics:
        if not table.inbound(topic).deliveries:
            raise RuntimeError(f"no route for {topic}")
    in_us = (time.perf_counter() - started) / lookups * 1e6
    return built, out_us, in_us


async def wait_connected(edge: Edge, timeout: float = 20) -> float:
    bridge = edge.services["uplink:mqtt"]
    started = time.monotonic()
    while bridge.status().state != "connected":  # type: ignore[attr-defined]
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the bridge did not connect: {bridge.status()}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def end_to_end(plan: Plan, progress: bool) -> dict[tuple[str, int], list[float]]:
    samples: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="argentic-edge-bench-routes-") as workdir:
        broker = Mosquitto(
            Path(workdir), extra_conf=["max_queued_messages 0"], persistence=False
        ).start()
        try:
            async with AsyncExitStack() as stack:
                edges = {}
                for size in SIZES:
                    started = time.monotonic()
                    edges[size] = await stack.enter_async_context(Edge(config(size, broker.port)))
                    await wait_connected(edges[size])
                    samples[("start", size)] = [time.monotonic() - started]
                for repeat in range(plan.repeats):
                    for size, edge in edges.items():
                        for name, rate in (await bursts(edge, size, broker.port, plan)).items():
                            samples.setdefault((name, size), []).append(rate)
                            if progress:
                                sys.stderr.write(
                                    f"repeat {repeat + 1}/{plan.repeats} {size:5} "
                                    f"routes {name}: {rate:,.0f} msg/s\n"
                                )
        finally:
            broker.stop()
    return samples


async def bursts(edge: Edge, size: int, port: int, plan: Plan) -> dict[str, float]:
    endpoints = edge.services["bus"].bus.endpoints  # type: ignore[attr-defined]
    root, count = f"n{size}", plan.count
    out = await measure(
        worker("mqtt-sub", port, f"{root}/out/#", count, 0),
        ("bus-pub", endpoints.publish, f"{root}/out/x", count, 0.0, count),
    )
    into = await measure(
        worker("bus-sub", endpoints.subscribe, endpoints.publish, f"{root}/in/", count),
        ("mqtt-pub", port, f"{root}/in/x", count, 0, 0.0, count),
    )
    for name, run in (("bus->MQTT", out), ("MQTT->bus", into)):
        if run.received < count:
            raise RuntimeError(f"{size} routes, {name}: {run.received} of {count} arrived")
    return {"bus->MQTT": out.rate, "MQTT->bus": into.rate}


def measure_all(plan: Plan, progress: bool = False) -> list[dict[str, Any]]:
    dispatch: dict[int, list[tuple[float, float, float]]] = {size: [] for size in SIZES}
    for _ in range(plan.repeats):
        for size in SIZES:
            dispatch[size].append(dispatch_us(size, plan.lookups))
    samples = asyncio.run(end_to_end(plan, progress))
    rows: list[dict[str, Any]] = []
    base = SIZES[0]
    for column, name in ((1, "bus->MQTT"), (2, "MQTT->bus")):
        baseline = median(sample[column] for sample in dispatch[base])
        for size in SIZES[1:]:
            ours = median(sample[column] for sample in dispatch[size])
            rows.append(
                {
                    "scenario": f"route dispatch {name}, {size:,} routes, new topic",
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ratio(ours, baseline),
                    "unit": "µs/msg (1 route each way)",
                }
            )
    for name in ("bus->MQTT", "MQTT->bus"):
        baseline = median(samples[(name, base)])
        for size in SIZES[1:]:
            ours = median(samples[(name, size)])
            rows.append(
                {
                    "scenario": f"bridge {name} QoS 0, {size:,} routes, new topic per msg",
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ratio(ours, baseline),
                    "unit": "msg/s (1 route each way)",
                }
            )
    for size in SIZES[1:]:
        ours = median(sample[0] for sample in dispatch[size]) * 1000
        baseline = median(sample[0] for sample in dispatch[base]) * 1000
        rows.append(
            {
                "scenario": f"route table build, {size:,} routes",
                "ours": ours,
                "baseline": baseline,
                "ratio": ratio(ours, baseline),
                "unit": "ms (1 route each way)",
            }
        )
        rows.append(
            {
                "scenario": f"bridge start to connected, {size:,} routes",
                "ours": samples[("start", size)][0],
                "baseline": samples[("start", base)][0],
                "ratio": ratio(samples[("start", size)][0], samples[("start", base)][0]),
                "unit": "s (1 route each way)",
            }
        )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    return measure_all(QUICK if quick else FULL)


def alone(args: argparse.Namespace) -> Outcome:
    """Alone, the suite reports its progress."""
    return Outcome(measure_all(QUICK if args.quick else FULL, progress=True))


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "one route each way", __doc__ or "", argv, measure=alone)


if __name__ == "__main__":
    raise SystemExit(main())
