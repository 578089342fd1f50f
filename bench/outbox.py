"""Outbox cost: the durable (SQLite) outbox beside the memory one, alone and in the bridge.

    python -m bench.outbox [--quick] [--json results.json]

Store alone: append + popleft + done.
What an uplink does while its broker is away and then back: messages come in batches (a bus read
batch, ``BATCH``) and are appended; then they are handed to the link and settled the same way.
Between batches the event loop gets a turn, which is when the durable outbox writes (one
transaction per batch). The file lives in a temporary directory on the machine's own disk (not
a tmpfs, where an fsync costs nothing). Rows: messages per second, medians over the repeats,
the memory outbox as the baseline, for ``synchronous=NORMAL`` (the default) and ``FULL``, in
bus-sized batches and one message at a time (every message its own transaction).

In the bridge: two appliances in this process, one with ``buffer.durable: true`` and one with
``false``, each on a Mosquitto of its own, measured in turn (workers of bench/bridge.py, QoS 1):

- broker up, outbox empty (the common case): a burst bus -> MQTT, rate as the subscriber sees it;
- draining: the broker stopped, a burst published on the bus waits in the outbox, the broker
  started again; rate = messages / (outbox empty - uplink connected again).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.app import Edge
from argentic_edge.bridge.durable import DurableOutbox
from argentic_edge.bridge.outbox import Outbox, Outgoing
from bench.bridge import line, measure, worker
from bench.common import median, ratio, suite_main
from tests.support.bridge import edge_config
from tests.support.brokers import Mosquitto

BATCH = 1024  # the uplink service's bus read batch
PAYLOAD = b'{"agent": "bench", "state": "ok", "value": 42.0}'  # a typical small status message


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int  # messages per run in batches
    single: int  # messages per run one at a time
    bridge_repeats: int
    bridge_count: int  # messages per bridge burst


FULL = Plan(repeats=5, count=200_000, single=2_000, bridge_repeats=3, bridge_count=20_000)
QUICK = Plan(repeats=3, count=50_000, single=1_000, bridge_repeats=2, bridge_count=5_000)
TOPIC = "bench/out1"

Factory = Callable[[Path], Outbox]


async def cycle(box: Outbox, count: int, batch: int) -> float:
    """Seconds to append, hand over and settle ``count`` messages ``batch`` at a time."""
    items = [Outgoing(f"bench/t/{index % 16}", PAYLOAD, 1, False) for index in range(count)]
    started = time.perf_counter()
    for first in range(0, count, batch):
        for item in items[first : first + batch]:
            box.append(item)
        await asyncio.sleep(0)  # the loop's turn: the durable outbox writes the batch here
        for _ in range(min(batch, count - first)):
            box.done(box.popleft())
        await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    assert not box, "every message was settled"
    return seconds


def rate(factory: Factory, count: int, batch: int, workdir: Path) -> float:
    box = factory(workdir / "bench.sqlite3")
    try:
        return count / asyncio.run(cycle(box, count, batch))
    finally:
        box.close()
        for path in workdir.iterdir():
            path.unlink()


def memory(_: Path) -> Outbox:
    return Outbox(10**9, 1 << 40)


def durable(synchronous: str) -> Factory:
    def make(path: Path) -> Outbox:
        return DurableOutbox(path, 10**9, 1 << 40, synchronous=synchronous)

    return make


def store_rows(plan: Plan) -> list[dict[str, Any]]:
    stores = {"memory": memory, "NORMAL": durable("NORMAL"), "FULL": durable("FULL")}
    shapes = {f"batches of {BATCH}": (plan.count, BATCH), "one at a time": (plan.single, 1)}
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-outbox-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        for _ in range(plan.repeats):  # interleaved, so a busy moment hits every store alike
            for shape, (count, batch) in shapes.items():
                for store, factory in stores.items():
                    rates.setdefault((shape, store), []).append(
                        rate(factory, count, batch, workdir)
                    )
    return [
        row(
            f"outbox append+popleft+done, {shape}: durable {store}",
            rates[(shape, store)],
            rates[(shape, "memory")],
        )
        for shape in shapes
        for store in ("NORMAL", "FULL")
    ]


def row(scenario: str, ours: list[float], baseline: list[float]) -> dict[str, Any]:
    mine, theirs = median(ours), median(baseline)
    return {
        "scenario": scenario,
        "ours": mine,
        "baseline": theirs,
        "ratio": ratio(mine, theirs),
        "unit": "msg/s",
    }


class Appliance:
    """One in-process appliance with one uplink on a broker of its own."""

    def __init__(self, workdir: Path, durable: bool) -> None:
        self.broker = Mosquitto(workdir, extra_conf=["max_queued_messages 0"], persistence=False)
        self.durable = durable
        self.edge: Edge | None = None

    async def __aenter__(self) -> Appliance:
        self.broker.start()
        config = edge_config(
            self.broker.port,
            node="durable" if self.durable else "memory",
            messaging={"high_water_mark": 100_000},
            bridge={
                "routes": [{"topic": f"{TOPIC}/#", "direction": "out", "qos": 1}],
                "buffer": {
                    "max_messages": 1_000_000,
                    "max_bytes": 1 << 30,
                    "durable": self.durable,
                },
            },
        )
        self.edge = Edge(config)
        await self.edge.start()
        await self.until(lambda: self.uplink.state == "connected", "connected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.edge is not None:
            await self.edge.stop()
        self.broker.stop()

    @property
    def uplink(self) -> Any:
        assert self.edge is not None
        return self.edge.services["uplink:mqtt"]

    @property
    def bus_publish(self) -> str:
        assert self.edge is not None
        return str(self.edge.services["bus"].bus.endpoints.publish)  # type: ignore[attr-defined]

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {timeout}s ({self.uplink.status()})")
            await asyncio.sleep(0.002)

    async def up(self, count: int) -> float:
        """Broker up, outbox empty: bus -> MQTT burst as the subscriber sees it."""
        result = await measure(
            worker("mqtt-sub", self.broker.port, f"{TOPIC}/#", count, 1),
            ("bus-pub", self.bus_publish, f"{TOPIC}/x", count, 0),
        )
        return result.rate

    async def drain(self, count: int) -> float:
        """Messages per second emptying the outbox after an outage of ``count`` messages."""
        self.broker.stop()
        await self.until(lambda: self.uplink.state != "connected", "lost the broker")
        publisher = worker("bus-pub", self.bus_publish, f"{TOPIC}/x", count, 0)
        try:
            await line(publisher)
        finally:
            publisher.wait(30)
        # (and what was in flight when the broker went, back in front)
        await self.until(lambda: len(self.uplink.outbox) >= count, "all in the outbox")
        waiting = len(self.uplink.outbox)
        self.broker.start()
        await self.until(lambda: self.uplink.state == "connected", "connected again")
        started = time.perf_counter()
        await self.until(
            lambda: not self.uplink.outbox and not self.uplink.status().in_flight, "drained"
        )
        return waiting / (time.perf_counter() - started)


async def bridge_rows(plan: Plan) -> list[dict[str, Any]]:
    rates: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-outbox-bridge-") as tmp:
        async with (
            Appliance(Path(tmp) / "durable", durable=True) as on_disk,
            Appliance(Path(tmp) / "memory", durable=False) as in_memory,
        ):
            for _ in range(plan.bridge_repeats):
                for appliance in (on_disk, in_memory):
                    count = plan.bridge_count
                    rates.setdefault(("up", appliance.durable), []).append(
                        await appliance.up(count)
                    )
                    rates.setdefault(("drain", appliance.durable), []).append(
                        await appliance.drain(count)
                    )
    return [
        row(
            "bridge bus->MQTT QoS 1, broker up (outbox empty): durable outbox",
            rates[("up", True)],
            rates[("up", False)],
        ),
        row(
            f"bridge draining {plan.bridge_count:,} after an outage, QoS 1: durable outbox",
            rates[("drain", True)],
            rates[("drain", False)],
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    plan = QUICK if quick else FULL
    return store_rows(plan) + asyncio.run(bridge_rows(plan))


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "memory outbox, same messages", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
