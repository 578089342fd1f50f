"""Kafka uplink benchmark: the appliance's Kafka paths beside raw aiokafka on the same cluster.

    python -m bench.kafka [--quick] [--json results.json]

One librdkafka mock cluster (tests/support/kafka.py, a process of its own) serves the whole run.
Per repeat, QoS 1 (acks=all, idempotent):

- bus->Kafka:    a bus publisher -> the appliance (a process of its own) and its Kafka uplink
                 -> Kafka -> a raw aiokafka consumer
- raw batched:   a raw aiokafka producer doing batched ``send()`` (the same linger and batch
                 size) -> Kafka -> the same consumer                        (goal: ours >= 0.8 x)
- send_and_wait: Argentic's own Kafka driver's pattern, one ``send_and_wait`` per message
                 (goal: ours >= 10 x)
- Kafka->bus:    a raw producer -> Kafka -> the appliance -> a bus subscriber, beside a raw
                 aiokafka consumer reading the same kind of records

Throughput: COUNT messages as fast as they go, rate = COUNT / (last arrival - first send).
Latency: messages paced at LATENCY_RATE/s, each stamped with the monotonic clock when sent, one
way to the receiver; p50 over the run. Figures are medians over the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.appliance import appliance_with
from bench.common import Outcome, Table, median, percentile, ratio, suite_main
from tests.support.kafka import MockKafka

GOAL_RAW = 0.8
GOAL_DRIVER = 10.0
PAYLOAD = b'{"type":"tool_call","tool_id":"bench","arguments":{"x":' + b"1" * 120 + b"}}"
TOPICS = ("bench.out.x", "bench.raw.x", "bench.driver.x", "bench.in.x", "bench.rawin.x")
# The mock cluster answers a fetch only when its wait is over, records or not (a real broker
# answers as soon as records come): both consumers wait briefly, or latency is the fetch wait.
FETCH_WAIT_MS = 5
PARTITIONS: dict[str, set[int]] = {}
STAMP = struct.Struct(">Q")  # monotonic ns when sent, in front of the payload


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int
    driver_count: int  # send_and_wait is slow: fewer messages, the same rate formula
    latency_count: int
    latency_rate: float


FULL = Plan(repeats=5, count=50_000, driver_count=3_000, latency_count=2_000, latency_rate=500)
QUICK = Plan(repeats=2, count=10_000, driver_count=1_000, latency_count=400, latency_rate=400)


@dataclass
class Arrivals:
    """What one receiver saw: a record's arrival time and its one-way latency."""

    expected: int
    first_sent: float = 0.0
    times: list[float] = field(default_factory=list)
    latencies_us: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        self.times.append(now / 1e9)
        self.latencies_us.append((now - STAMP.unpack_from(payload)[0]) / 1000)
        if len(self.times) >= self.expected:
            self.done.set()

    @property
    def rate(self) -> float:
        if not self.times:
            return 0.0
        return len(self.times) / max(1e-9, self.times[-1] - self.first_sent)


def stamped() -> bytes:
    return STAMP.pack(time.monotonic_ns()) + PAYLOAD


Sender = Callable[[str, int, float, Arrivals], Awaitable[None]]


async def paced(count: int, rate: float, send_one: Callable[[], Awaitable[None]]) -> None:
    """``count`` sends, at ``rate`` per second (0: as fast as they go)."""
    started = time.monotonic()
    for index in range(count):
        if rate:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await send_one()


class Reader:
    """A raw aiokafka consumer counting what arrives on one topic from now on."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
        )
        self.topic = topic
        self.task: asyncio.Task[None] | None = None

    async def start(self, arrivals: Arrivals) -> None:
        await self.consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in PARTITIONS[self.topic]]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._read(arrivals))

    async def _read(self, arrivals: Arrivals) -> None:
        while not arrivals.done.is_set():
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    arrivals.saw(record.value)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()


async def measure(
    bootstrap: str, topic: str, count: int, rate: float, send: Callable[[Arrivals], Awaitable[None]]
) -> Arrivals:
    """Run ``send`` and wait until a raw consumer of ``topic`` has seen ``count`` records."""
    arrivals = Arrivals(count)
    reader = Reader(bootstrap, topic)
    await reader.start(arrivals)
    try:
        arrivals.first_sent = time.monotonic()
        await send(arrivals)
        await asyncio.wait_for(arrivals.done.wait(), 120)
    finally:
        await reader.stop()
    return arrivals


async def create_topic(bootstrap: str, topic: str) -> None:
    """Kafka creates a topic on first use; its partitions are noted for the readers."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, stamped())
        PARTITIONS[topic] = set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


def batching() -> dict[str, Any]:
    """The producer settings the uplink uses by default (config.KafkaConfig), for the baseline."""
    from argentic_edge.config import KafkaConfig

    defaults = KafkaConfig()
    return {"linger_ms": defaults.linger_ms, "max_batch_size": defaults.batch_size}


async def raw_batched(bootstrap: str, topic: str, count: int, rate: float) -> Arrivals:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **batching()
    )
    await producer.start()
    futures: list[asyncio.Future[Any]] = []

    async def one() -> None:
        futures.append(await producer.send(topic, stamped(), key=b"bench"))

    async def send(_arrivals: Arrivals) -> None:
        await paced(count, rate, one)
        await asyncio.gather(*futures)

    try:
        return await measure(bootstrap, topic, count, rate, send)
    finally:
        await producer.stop()


async def driver_pattern(bootstrap: str, topic: str, count: int, rate: float) -> Arrivals:
    """As argentic's KafkaDriver.publish: a default producer, ``send_and_wait`` per message."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()

    async def one() -> None:
        await producer.send_and_wait(topic, stamped())

    try:
        return await measure(
            bootstrap, topic, count, rate, lambda _arrivals: paced(count, rate, one)
        )
    finally:
        await producer.stop()


async def raw_consumer(bootstrap: str, topic: str, count: int, rate: float) -> Arrivals:
    """Kafka->bus baseline: a raw producer, a raw consumer reading the records."""
    return await measure(
        bootstrap, topic, count, rate, lambda _arrivals: produce(bootstrap, topic, count, rate)
    )


Scenario = Callable[[str, str, int, float], Awaitable[Arrivals]]  # bootstrap, topic, count, rate


async def collect(
    bootstrap: str, plan: Plan, ours_out: Scenario, ours_in: Scenario, progress: bool
) -> list[dict[str, Any]]:
    paths: dict[str, tuple[Scenario, str]] = {
        "bus->Kafka": (ours_out, TOPICS[0]),
        "raw batched": (raw_batched, TOPICS[1]),
        "send_and_wait": (driver_pattern, TOPICS[2]),
        "Kafka->bus": (ours_in, TOPICS[3]),
        "raw consumer": (raw_consumer, TOPICS[4]),
    }
    rates: dict[str, list[float]] = {}
    p50s: dict[str, list[float]] = {}
    for repeat in range(plan.repeats):
        for name, (path, topic) in paths.items():
            count = plan.driver_count if name == "send_and_wait" else plan.count
            burst = await path(bootstrap, topic, count, 0.0)
            slow = await path(bootstrap, topic, plan.latency_count, plan.latency_rate)
            rates.setdefault(name, []).append(burst.rate)
            p50s.setdefault(name, []).append(percentile(slow.latencies_us, 0.5) / 1000)
            if progress:
                sys.stderr.write(
                    f"repeat {repeat + 1}/{plan.repeats} {name:13}: {burst.rate:,.0f} msg/s, "
                    f"p50 {p50s[name][-1]:.2f} ms\n"
                )
    rate = {name: median(values) for name, values in rates.items()}
    p50 = {name: median(values) for name, values in p50s.items()}
    rows = []
    for scenario, ours, baseline in (
        ("bus->Kafka vs raw batched send()", "bus->Kafka", "raw batched"),
        ("bus->Kafka vs send_and_wait per message", "bus->Kafka", "send_and_wait"),
        ("Kafka->bus vs raw consumer", "Kafka->bus", "raw consumer"),
    ):
        rows.append(
            {
                "scenario": f"kafka {scenario} throughput",
                "ours": rate[ours],
                "baseline": rate[baseline],
                "ratio": ratio(rate[ours], rate[baseline]),
                "unit": "msg/s",
            }
        )
        rows.append(
            {
                "scenario": f"kafka {scenario} latency p50",
                "ours": p50[ours],
                "baseline": p50[baseline],
                "ratio": ratio(p50[ours], p50[baseline]),
                "unit": "ms",
            }
        )
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    raw, driver = rows[0]["ratio"], rows[2]["ratio"]
    return (
        f"goals: bus->Kafka >= {GOAL_RAW} x raw batched send(): {raw:.2f} "
        f"({'met' if raw >= GOAL_RAW else 'MISSED'}); >= {GOAL_DRIVER:.0f} x send_and_wait: "
        f"{driver:.1f} ({'met' if driver >= GOAL_DRIVER else 'MISSED'})\n"
    )


async def produce(bootstrap: str, topic: str, count: int, rate: float) -> None:
    """``count`` stamped records from a raw producer, the way an agent on Kafka writes them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **batching())
    await producer.start()
    futures: list[asyncio.Future[Any]] = []

    async def one() -> None:
        futures.append(await producer.send(topic, stamped(), key=b"bench"))

    try:
        await paced(count, rate, one)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


OursPaths = tuple[Scenario, Scenario]


@asynccontextmanager
async def through_appliance(bootstrap: str) -> AsyncIterator[OursPaths]:
    """The appliance in a process of its own with a Kafka uplink (bench/appliance.py)."""
    uplink = {
        "name": "bench",
        "protocol": "kafka",
        "broker_address": [bootstrap],
        "metadata_refresh": 1,
        "fetch_max_wait_ms": FETCH_WAIT_MS,
        "routes": [
            {"topic": "bench/out/#", "direction": "out", "qos": 1},
            {"topic": "bench/in/#", "direction": "in", "qos": 1},
        ],
        "buffer": {"max_messages": 1_000_000, "max_bytes": 1 << 30},
    }
    async with appliance_with(uplink, "bench/in/", _ready) as (_app, bus):
        inbound: list[Arrivals] = []

        async def read() -> None:  # as Argentic's ZeroMQ driver reads: one recv per frame
            while True:
                frame = await bus.sub.recv()
                if inbound:
                    inbound[-1].saw(frame.partition(b" ")[2])

        reader = asyncio.create_task(read())

        async def ours_out(bootstrap: str, topic: str, count: int, rate: float) -> Arrivals:
            async def one() -> None:
                await bus.send("bench/out/x", stamped())

            return await measure(bootstrap, topic, count, rate, lambda _a: paced(count, rate, one))

        async def ours_in(bootstrap: str, topic: str, count: int, rate: float) -> Arrivals:
            arrivals = Arrivals(count)
            inbound.append(arrivals)
            arrivals.first_sent = time.monotonic()
            await produce(bootstrap, "bench.in.x", count, rate)
            await asyncio.wait_for(arrivals.done.wait(), 120)
            inbound.remove(arrivals)
            return arrivals

        try:
            yield ours_out, ours_in
        finally:
            reader.cancel()


def _ready(uplink: dict[str, Any]) -> bool:
    return bool(uplink["state"] == "connected" and uplink["link"]["partitions_assigned"])


async def measure_all(plan: Plan, progress: bool) -> list[dict[str, Any]]:
    cluster = MockKafka().start()
    try:
        for topic in TOPICS:
            await create_topic(cluster.bootstrap, topic)
        async with through_appliance(cluster.bootstrap) as (ours_out, ours_in):
            return await collect(cluster.bootstrap, plan, ours_out, ours_in, progress)
    finally:
        cluster.stop()


def run(quick: bool) -> list[dict[str, Any]]:
    return asyncio.run(measure_all(QUICK if quick else FULL, progress=False))


def alone(args: Any) -> Outcome:
    plan = QUICK if args.quick else FULL
    rows = asyncio.run(measure_all(plan, progress=True))
    return Outcome(
        rows, text=Table.from_rows(rows, baseline="raw aiokafka").render() + verdict(rows)
    )


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "raw aiokafka", __doc__ or "", argv, measure=alone)


if __name__ == "__main__":
    raise SystemExit(main())
