"""Bridge benchmark: throughput and added latency, each beside raw paho-mqtt on the same broker.

    python -m bench.bridge [--quick] [--json results.json]

One Mosquitto (stock settings, except an unlimited per-client queue so a slow counting
subscriber loses nothing) and one appliance (bus + bridge) run for the whole benchmark; every
publisher and subscriber is a process of its own (bench/bridge_worker.py), so no two parts share
a GIL. Per repeat and QoS:

- raw:        paho publisher -> Mosquitto -> paho subscriber            (the baseline)
- bus->MQTT:  bus publisher -> proxy -> bridge -> Mosquitto -> paho subscriber
- MQTT->bus:  paho publisher -> Mosquitto -> bridge -> proxy -> bus subscriber

Throughput: a burst of COUNT messages, rate = messages received / (last - first arrival).
Latency: messages paced at LATENCY_RATE/s, one-way time publisher -> subscriber (both stamp with
the system-wide monotonic clock). Figures are medians over the repeats; the goals (throughput at
least half of raw paho, added median latency at most 1 ms) are checked at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.app import Edge
from argentic_edge.config import EdgeConfig
from bench.common import Outcome, Table, median, percentile, ratio, suite_main
from tests.support.appliance import environment
from tests.support.bridge import edge_config
from tests.support.brokers import Mosquitto
from tests.support.config import REPO_ROOT

GOAL_RATIO = 0.5
GOAL_ADDED_P50_MS = 1.0


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int  # messages per throughput run
    latency_count: int  # messages per latency run
    latency_rate: float  # messages per second in a latency run


FULL = Plan(repeats=5, count=30_000, latency_count=2_000, latency_rate=1_000)
QUICK = Plan(repeats=3, count=6_000, latency_count=500, latency_rate=1_000)


@dataclass(frozen=True)
class Run:
    received: int
    seconds: float
    latencies_us: list[float]

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else float("nan")


def worker(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bridge_worker", *map(str, args)],
        cwd=REPO_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        text=True,
    )


async def line(process: subprocess.Popen[str], timeout: float = 120) -> str:
    assert process.stdout is not None
    text = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
    if not text:
        raise RuntimeError(f"benchmark worker {process.args[3:]} ended without answering")
    return text.strip()


async def measure(subscriber: subprocess.Popen[str], publisher_args: tuple[object, ...]) -> Run:
    """Start a publisher once the subscriber is ready; the subscriber's report is the result."""
    (result,) = await measure_each([subscriber], publisher_args)
    return result


async def measure_each(
    subscribers: list[subprocess.Popen[str]], publisher_args: tuple[object, ...]
) -> list[Run]:
    """Start a publisher once every subscriber is ready; their reports, in their order."""
    try:
        for subscriber in subscribers:
            if await line(subscriber, 30) != "ready":
                raise RuntimeError("a subscriber did not get ready")
        publisher = worker(*publisher_args)
        try:
            await line(publisher)
        finally:
            publisher.wait(30)
        reports = [json.loads(await line(subscriber)) for subscriber in subscribers]
        return [Run(r["received"], r["seconds"], r["latencies_us"]) for r in reports]
    finally:
        for subscriber in subscribers:
            subscriber.wait(30)


def appliance_config(broker_port: int) -> EdgeConfig:
    routes = [
        {"topic": f"bench/{side}{qos}/#", "direction": "out" if side == "out" else "in", "qos": qos}
        for side in ("out", "in")
        for qos in (0, 1)
    ]
    return edge_config(
        broker_port,
        node="bench",
        messaging={"high_water_mark": 100_000},
        bridge={"routes": routes, "buffer": {"max_messages": 1_000_000, "max_bytes": 1 << 30}},
    )


class Bench:
    def __init__(self, plan: Plan, broker: Mosquitto, edge: Edge) -> None:
        self.plan = plan
        self.port = broker.port
        endpoints = edge.services["bus"].bus.endpoints  # type: ignore[attr-defined]
        self.bus_publish = endpoints.publish
        self.bus_subscribe = endpoints.subscribe

    async def raw(self, qos: int, count: int, rate: float) -> Run:
        topic = f"bench/raw{qos}"
        return await measure(
            worker("mqtt-sub", self.port, f"{topic}/#", count, qos),
            ("mqtt-pub", self.port, f"{topic}/x", count, qos, rate),
        )

    async def bus_to_mqtt(self, qos: int, count: int, rate: float) -> Run:
        topic = f"bench/out{qos}"
        return await measure(
            worker("mqtt-sub", self.port, f"{topic}/#", count, qos),
            ("bus-pub", self.bus_publish, f"{topic}/x", count, rate),
        )

    async def mqtt_to_bus(self, qos: int, count: int, rate: float) -> Run:
        topic = f"bench/in{qos}"
        return await measure(
            worker("bus-sub", self.bus_subscribe, self.bus_publish, f"{topic}/", count),
            ("mqtt-pub", self.port, f"{topic}/x", count, qos, rate),
        )


async def measure_all(plan: Plan, progress: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="argentic-edge-bench-") as workdir:
        broker = Mosquitto(
            Path(workdir), extra_conf=["max_queued_messages 0"], persistence=False
        ).start()
        try:
            async with Edge(appliance_config(broker.port)) as edge:
                bridge = edge.services["uplink:mqtt"]
                deadline = time.monotonic() + 10
                while bridge.status().state != "connected":  # type: ignore[attr-defined]
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the bridge did not connect: {bridge.status()}")
                    await asyncio.sleep(0.05)
                bench = Bench(plan, broker, edge)
                return await collect(bench, plan, progress)
        finally:
            broker.stop()


async def collect(bench: Bench, plan: Plan, progress: bool) -> list[dict[str, Any]]:
    samples: dict[tuple[str, str, int], list[Run]] = {}
    paths = {"raw": bench.raw, "bus->MQTT": bench.bus_to_mqtt, "MQTT->bus": bench.mqtt_to_bus}
    for repeat in range(plan.repeats):
        for qos in (0, 1):
            for name, path in paths.items():
                for kind, count, rate in (
                    ("throughput", plan.count, 0.0),
                    ("latency", plan.latency_count, plan.latency_rate),
                ):
                    result = await path(qos, count, rate)
                    samples.setdefault((kind, name, qos), []).append(result)
                    if progress:
                        sys.stderr.write(
                            f"repeat {repeat + 1}/{plan.repeats} {kind:10} {name:9} "
                            f"qos {qos}: {result.received}/{count} msgs, "
                            f"{result.rate:,.0f} msg/s\n"
                        )
    rows = []
    for qos in (0, 1):
        raw = samples[("throughput", "raw", qos)]
        raw_latency = samples[("latency", "raw", qos)]
        raw_rate = median(run.rate for run in raw)
        raw_p50 = median(percentile(run.latencies_us, 0.5) for run in raw_latency) / 1000
        raw_p99 = median(percentile(run.latencies_us, 0.99) for run in raw_latency) / 1000
        for name in ("bus->MQTT", "MQTT->bus"):
            ours = samples[("throughput", name, qos)]
            latency = samples[("latency", name, qos)]
            rate = median(run.rate for run in ours)
            p50 = median(percentile(run.latencies_us, 0.5) for run in latency) / 1000
            p99 = median(percentile(run.latencies_us, 0.99) for run in latency) / 1000
            rows.append(
                {
                    "path": name,
                    "qos": qos,
                    "messages": plan.count,
                    "repeats": plan.repeats,
                    "raw_msgs_per_s": raw_rate,
                    "bridge_msgs_per_s": rate,
                    "ratio": ratio(rate, raw_rate),
                    "delivered": min(run.received for run in ours) / plan.count,
                    "raw_p50_ms": raw_p50,
                    "bridge_p50_ms": p50,
                    "added_p50_ms": p50 - raw_p50,
                    "raw_p99_ms": raw_p99,
                    "bridge_p99_ms": p99,
                    "added_p99_ms": p99 - raw_p99,
                }
            )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    throughput = Table(["path", "QoS", "raw paho msg/s", "bridge msg/s", "ratio", "delivered"])
    latency = Table(
        [
            "path",
            "QoS",
            "raw p50 ms",
            "bridge p50 ms",
            "added p50 ms",
            "raw p99 ms",
            "bridge p99 ms",
            "added p99 ms",
        ]
    )
    for row in rows:
        throughput.add(
            row["path"],
            row["qos"],
            row["raw_msgs_per_s"],
            row["bridge_msgs_per_s"],
            row["ratio"],
            f"{row['delivered']:.0%}",
        )
        latency.add(
            row["path"],
            row["qos"],
            row["raw_p50_ms"],
            row["bridge_p50_ms"],
            row["added_p50_ms"],
            row["raw_p99_ms"],
            row["bridge_p99_ms"],
            row["added_p99_ms"],
        )
    worst_ratio = min(row["ratio"] for row in rows)
    worst_added = max(row["added_p50_ms"] for row in rows)
    verdict = (
        f"goals: throughput >= {GOAL_RATIO} x raw paho: worst {worst_ratio:.2f} "
        f"({'met' if worst_ratio >= GOAL_RATIO else 'MISSED'}); added p50 <= "
        f"{GOAL_ADDED_P50_MS} ms: worst {worst_added:.2f} ms "
        f"({'met' if worst_added <= GOAL_ADDED_P50_MS else 'MISSED'})\n"
    )
    return (
        "Throughput (medians)\n"
        + throughput.render()
        + "\nLatency, one way (medians)\n"
        + latency.render()
        + "\n"
        + verdict
    )


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same figures as scenario/ours/baseline/ratio rows, for ``python -m bench``."""
    summary = []
    for row in rows:
        name = f"bridge {row['path']} QoS {row['qos']}"
        summary.append(
            {
                "scenario": f"{name} throughput",
                "ours": row["bridge_msgs_per_s"],
                "baseline": row["raw_msgs_per_s"],
                "ratio": row["ratio"],
                "unit": "msg/s (raw paho)",
            }
        )
        summary.append(
            {
                "scenario": f"{name} latency p50",
                "ours": row["bridge_p50_ms"],
                "baseline": row["raw_p50_ms"],
                "ratio": ratio(row["bridge_p50_ms"], row["raw_p50_ms"]),
                "unit": "ms (raw paho)",
            }
        )
    return summary


def run(quick: bool) -> list[dict[str, Any]]:
    return summary_rows(asyncio.run(measure_all(QUICK if quick else FULL, progress=False)))


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no per-run progress on stderr")


def alone(args: argparse.Namespace) -> Outcome:
    """Alone, the suite shows its own two tables, the goals and per-run progress."""
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    rows = asyncio.run(measure_all(plan, progress=not args.quiet))
    return Outcome(
        rows,
        text=render(rows)
        + (
            f"({plan.repeats} repeats, {plan.count:,} messages per throughput run, "
            f"{time.monotonic() - started:.0f} s)\n"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "raw paho-mqtt", __doc__ or "", argv, options=options, measure=alone)


if __name__ == "__main__":
    raise SystemExit(main())
