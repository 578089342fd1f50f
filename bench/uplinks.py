"""Uplinks benchmark: bus-to-broker throughput with two uplinks at once beside one uplink.

    python -m bench.uplinks [--quick] [--json results.json]

Two Mosquitto brokers (stock, unlimited per-client queue) run for the whole benchmark. Per
repeat and QoS, a burst of COUNT messages goes from a bus publisher through the appliance:

- one uplink:  bus -> uplink a -> broker A -> paho subscriber            (the baseline)
- two uplinks: bus -> uplink a -> broker A -> paho subscriber, and at the same time
               bus -> uplink b -> broker B -> paho subscriber (the same messages, both routed)

The rate of a path is messages received / (last - first arrival), per subscriber; the two-uplink
figure is the slower of its two subscribers. The ratio (two / one) says what the second uplink
costs the first: each uplink has its own bus reader, so on two cores it is about what one more
busy uplink takes from the event loop they share. Every process is its own (no shared GIL
between publisher, brokers, appliance and subscribers); figures are medians of the repeats.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.app import Edge
from argentic_edge.config import EdgeConfig, parse_config
from bench.bridge import Run, measure_each, worker
from bench.common import median, ratio, suite_main
from tests.support.bridge import wait_until
from tests.support.brokers import Mosquitto
from tests.support.config import bus_section, config_document

TOPIC = "bench/up"
WARM_UP = 200  # messages per path before the measured runs


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int


FULL = Plan(repeats=5, count=30_000)
QUICK = Plan(repeats=3, count=6_000)


def appliance_config(node: str, ports: list[int]) -> EdgeConfig:
    """The bus and one uplink per broker port, each routing ``bench/up<qos>/#`` out at that QoS
    (0 and 1)."""
    uplinks = [
        {
            "name": name,
            "protocol": "mqtt",
            "broker_address": "127.0.0.1",
            "port": port,
            "routes": [
                {"topic": f"{TOPIC}{qos}/#", "direction": "out", "qos": qos} for qos in (0, 1)
            ],
            "buffer": {"max_messages": 1_000_000, "max_bytes": 1 << 30, "durable": False},
        }
        for name, port in zip("ab", ports, strict=False)
    ]
    return parse_config(
        config_document(
            Path("/nonexistent-not-used"),
            node_name=node,
            messaging=bus_section(high_water_mark=100_000),
            bridge={"enabled": False, "ha_discovery": False},
            uplinks=uplinks,
        ),
        env={},
    )


async def burst(edge: Edge, brokers: list[Mosquitto], qos: int, count: int) -> list[Run]:
    """One burst from the bus of ``edge``, one report per broker."""
    endpoints = edge.services["bus"].bus.endpoints  # type: ignore[attr-defined]
    subscribers = [worker("mqtt-sub", b.port, f"{TOPIC}{qos}/#", count, qos) for b in brokers]
    return await measure_each(
        subscribers, ("bus-pub", endpoints.publish, f"{TOPIC}{qos}/x", count, 0.0)
    )


async def measure_all(plan: Plan) -> list[dict[str, Any]]:
    """Both appliances run for the whole benchmark (their bus subscriptions settled, as in
    use); they take turns, and each is warmed up with one small burst first."""
    with tempfile.TemporaryDirectory(prefix="argentic-edge-bench-") as workdir:
        brokers = [
            Mosquitto(Path(workdir) / name, extra_conf=["max_queued_messages 0"], persistence=False)
            for name in ("a", "b")
        ]
        for broker in brokers:
            broker.start()
        try:
            async with (
                Edge(appliance_config("bench-one", [brokers[0].port])) as single,
                Edge(appliance_config("bench-two", [b.port for b in brokers])) as double,
            ):
                await wait_until(
                    lambda: all(
                        u.state == "connected" for u in single.uplinks() + double.uplinks()
                    ),
                    timeout=10,
                    what="the uplinks to connect",
                )
                for qos in (0, 1):
                    await burst(single, brokers[:1], qos, WARM_UP)
                    await burst(double, brokers, qos, WARM_UP)
                return await _repeats(plan, single, double, brokers)
        finally:
            for broker in brokers:
                broker.stop()


async def _repeats(
    plan: Plan, single: Edge, double: Edge, brokers: list[Mosquitto]
) -> list[dict[str, Any]]:
    one: dict[int, list[float]] = {0: [], 1: []}
    two: dict[int, list[float]] = {0: [], 1: []}
    delivered: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(plan.repeats):
        for qos in (0, 1):
            (alone,) = await burst(single, brokers[:1], qos, plan.count)
            both = await burst(double, brokers, qos, plan.count)
            one[qos].append(alone.rate)
            two[qos].append(min(run.rate for run in both))
            delivered[qos].append(min(run.received for run in [alone, *both]) / plan.count)
    return [
        {
            "scenario": f"uplinks bus->MQTT QoS {qos}: two at once (each) / one",
            "ours": median(two[qos]),
            "baseline": median(one[qos]),
            "ratio": ratio(median(two[qos]), median(one[qos])),
            "unit": f"msg/s per uplink (one uplink), {min(delivered[qos]):.0%} delivered",
        }
        for qos in (0, 1)
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    return asyncio.run(measure_all(QUICK if quick else FULL))


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "one uplink", __doc__ or "", argv)


if __name__ == "__main__":
    raise SystemExit(main())
