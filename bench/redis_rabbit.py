"""Redis and RabbitMQ uplinks: the links' rate against the raw client and Argentic's pattern.

Per protocol and direction, the same N messages (~200-byte JSON, one topic) go through:
- the uplink's link (``RedisLink``/``RabbitLink``, driven through the Link interface as the
  service drives it: publish without waiting, settled by callback; received messages acked);
- the raw client doing the same work well: redis-py pipelined ``PUBLISH`` (chunks of 1000) and a
  ``get_message`` loop; aio-pika publishing 1000 at a time with confirms, or back to back without;
  an aio-pika consumer acking each message (goal: link >= 0.8 x raw);
- Argentic's own driver pattern: one awaited ``PUBLISH`` per message (RedisDriver.publish), and
  for RabbitMQ ``declare_exchange`` then an awaited, confirmed publish per message
  (RabbitMQDriver.publish); receiving, its ``listen()`` loop parsing each JSON document
  (goal for publishing: link >= 10 x Argentic).
Out: from the first publish until the server has settled the last one. In: from the first publish
of a pipelined publisher in the same process until the last message is received.
"Through the appliance": a bus agent -> the appliance in a process of its own, as users run it
(bench/appliance.py) -> the server -> a raw subscriber, and back; its baseline is the raw
publisher -> the server -> the raw subscriber. Servers are started by the bench on free
loopback ports. Run: ``python -m bench.redis_rabbit``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from argentic_edge.bridge.link import LinkCallbacks, Publication
from argentic_edge.bridge.rabbitmq import RabbitLink
from argentic_edge.bridge.redis import RedisLink
from argentic_edge.config import RabbitConfig, RedisConfig
from bench.appliance import appliance_with
from bench.common import median, ratio, suite_main
from tests.support.bridge import BusClient
from tests.support.rabbitmq import RabbitServer
from tests.support.redis import RedisServer

TOPIC = "agent/bench/status"
QUIET = 1.0  # seconds without a new message: the run is over (what did not come was dropped)
CHUNK = 1000
PAYLOAD = json.dumps({"type": "DATA", "source": "bench", "data": {"x": "y" * 120}}).encode()
GOAL_RAW, GOAL_ARGENTIC = 0.8, 10.0


class Counting:
    """Link callbacks that count, and fire ``done`` at a target."""

    def __init__(self, target: int) -> None:
        self.target, self.settled, self.received = target, 0, 0
        self.done = asyncio.Event()

    def callbacks(self) -> LinkCallbacks:
        return LinkCallbacks(self._message, self._settled, lambda reason: None)

    def _message(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        self.received += 1
        if ack is not None:
            ack()
        if self.received == self.target:
            self.done.set()

    def _settled(self, token: object, problem: str | None) -> None:
        self.settled += 1
        if self.settled == self.target:
            self.done.set()


async def timed(work: Callable[[], Awaitable[None]], count: int) -> float:
    """Messages per second of one run of ``work``."""
    start = time.perf_counter()
    await asyncio.wait_for(work(), 300)
    return count / (time.perf_counter() - start)


def publications(count: int, qos: int) -> list[Publication]:
    return [Publication(TOPIC, PAYLOAD, qos, False, n) for n in range(count)]


OUT, IN, BOTH = "agent/bench/out", "agent/bench/in", "agent/bench/both"  # through the appliance


def bench_uplink(protocol: str, port: int) -> dict[str, Any]:
    """One uplink, QoS 1, its outbox durable as by default: a route per direction, and one both
    ways, whose own messages come back from the server (Redis and AMQP have no "no local") and
    are read and dropped: what a both-ways route costs."""
    return {
        "name": "bench",
        "protocol": protocol,
        "broker_address": "127.0.0.1",
        "port": port,
        "routes": [
            {"topic": OUT, "direction": "out", "qos": 1},
            {"topic": IN, "direction": "in", "qos": 1},
            {"topic": BOTH, "qos": 1},
        ],
        "max_payload": 65536,
    }


async def until_quiet(count: Callable[[], int], target: int) -> None:
    """Wait for ``target`` messages, or until none came for QUIET seconds."""
    last, changed = -1, time.perf_counter()
    while count() < target and time.perf_counter() - changed < QUIET:
        if count() != last:
            last, changed = count(), time.perf_counter()
        await asyncio.sleep(0.01)


async def bus_sender(bus: BusClient, count: int, topic: str = TOPIC) -> None:
    """An agent publishing ``count`` messages on the bus, in bursts the PUB socket takes."""
    for start in range(0, count, 200):
        for _ in range(min(200, count - start)):
            await bus.send(topic, PAYLOAD)
        await asyncio.sleep(0)


async def bus_counter(bus: BusClient, topic: str, seen: list[int]) -> None:
    """An agent's receive loop, as Argentic's ZeroMQ driver reads: one ``recv`` per frame."""
    head = topic.encode() + b" "
    while True:
        if (await bus.sub.recv()).startswith(head):
            seen[0] += 1


Outward = Callable[[str, list[int]], Awaitable[Callable[[], Awaitable[None]]]]


async def through_appliance(
    uplink: dict[str, Any], count: int, outward: Outward, inward: Callable[[str], Awaitable[None]]
) -> dict[str, float]:
    """msg/s through the appliance in a process of its own (bench/appliance.py), per path:
    ``outward(topic, seen)`` starts a counter on the server's side and returns its stop;
    ``inward(topic)`` publishes ``count`` there."""
    rates = {}
    async with appliance_with(uplink, IN) as (_app, bus):  # the agent reads only what comes in
        for path, topic in (("appliance out", OUT), ("appliance out, route both ways", BOTH)):
            seen = [0]
            stop = await outward(topic, seen)
            start = time.perf_counter()
            await bus_sender(bus, count, topic)
            await until_quiet(lambda seen=seen: seen[0], count)
            elapsed = time.perf_counter() - start - (QUIET if seen[0] < count else 0)
            rates[path] = seen[0] / elapsed
            await stop()
        got = [0]
        counter = asyncio.get_running_loop().create_task(bus_counter(bus, IN, got))
        start = time.perf_counter()
        await inward(IN)
        await until_quiet(lambda: got[0], count)
        rates["appliance in"] = got[0] / (
            time.perf_counter() - start - (QUIET if got[0] < count else 0)
        )
        counter.cancel()
    return rates


# --- Redis ----------------------------------------------------------------------------------


async def redis_rows(server: RedisServer, count: int, repeats: int) -> list[dict[str, Any]]:
    client = aioredis.Redis(port=server.port)
    config = RedisConfig(broker_address="127.0.0.1", port=server.port)
    rates: dict[str, list[float]] = {}

    async def link_out() -> None:
        counting = Counting(count)
        link = RedisLink(config, counting.callbacks(), client_id="bench", node_id="b", consumer="b")
        await link.connect()
        for item in publications(count, 1):
            link.publish(item)
        await counting.done.wait()
        await link.close()

    async def raw_out(topic: str = TOPIC) -> None:
        for start in range(0, count, CHUNK):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(CHUNK, count - start)):
                pipe.publish(topic, PAYLOAD)
            await pipe.execute()

    async def argentic_out() -> None:
        for _ in range(count):
            await client.publish(TOPIC, PAYLOAD)

    async def link_in() -> None:
        counting = Counting(count)
        link = RedisLink(config, counting.callbacks(), client_id="bench", node_id="b", consumer="b")
        await link.connect()
        await link.subscribe([(TOPIC, 0)])
        await asyncio.sleep(0.1)
        await raw_out()
        await counting.done.wait()
        await link.close()

    async def subscriber_in(parse: bool) -> None:
        pubsub = client.pubsub()
        await pubsub.subscribe(TOPIC)
        await pubsub.get_message(timeout=1)
        publisher = asyncio.get_running_loop().create_task(raw_out())
        received = 0
        while received < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if message is not None:
                if parse:  # Argentic's _reader validates every message into a model
                    json.loads(message["data"])
                received += 1
        await publisher
        await pubsub.aclose()

    async def subscriber(topic: str, seen: list[int]) -> Callable[[], Awaitable[None]]:
        pubsub = client.pubsub()
        await pubsub.subscribe(topic)
        await pubsub.get_message(timeout=1)

        async def read() -> None:
            while True:
                if await pubsub.get_message(ignore_subscribe_messages=True, timeout=1):
                    seen[0] += 1

        task = asyncio.get_running_loop().create_task(read())

        async def stop() -> None:
            task.cancel()
            await pubsub.aclose()

        return stop

    uplink = bench_uplink("redis", server.port)
    for _ in range(repeats):
        for path, rate in (await through_appliance(uplink, count, subscriber, raw_out)).items():
            rates.setdefault(path, []).append(rate)
        for name, job, n in [
            ("link out", link_out, count),
            ("raw out", raw_out, count),
            ("argentic out", argentic_out, max(count // 10, 500)),
            ("link in", link_in, count),
            ("raw in", lambda: subscriber_in(False), count),
            ("argentic in", lambda: subscriber_in(True), count),
        ]:
            rates.setdefault(name, []).append(await timed(job, n))
    await client.aclose()
    return rows("Redis pub/sub", rates, "redis-py pipelined PUBLISH / get_message loop")


# --- RabbitMQ -------------------------------------------------------------------------------


async def rabbit_rows(node: RabbitServer, count: int, repeats: int) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(node.url)
    confirming = await connection.channel(publisher_confirms=True)
    fast = await connection.channel(publisher_confirms=False)
    config = RabbitConfig(broker_address="127.0.0.1", port=node.port)
    rates: dict[str, list[float]] = {}
    for topic in (TOPIC, OUT, IN, BOTH):  # as Argentic's driver declares them
        await confirming.declare_exchange(topic, aio_pika.ExchangeType.FANOUT)

    async def link_out(qos: int) -> None:
        counting = Counting(count)
        link = RabbitLink(config, counting.callbacks(), client_id="bench-out")
        await link.connect()
        for item in publications(count, qos):
            link.publish(item)
        await counting.done.wait()
        await link.close()

    async def raw_out(confirms: bool, topic: str = TOPIC) -> None:
        exchange = await (confirming if confirms else fast).get_exchange(topic)
        if not confirms:
            for _ in range(count):
                await exchange.publish(aio_pika.Message(PAYLOAD), routing_key="", mandatory=False)
            return
        for start in range(0, count, CHUNK):
            await asyncio.gather(
                *(
                    exchange.publish(aio_pika.Message(PAYLOAD), routing_key="", mandatory=False)
                    for _ in range(min(CHUNK, count - start))
                )
            )

    async def argentic_out() -> None:
        for _ in range(count // 10):
            exchange = await confirming.declare_exchange(TOPIC, aio_pika.ExchangeType.FANOUT)
            await exchange.publish(aio_pika.Message(PAYLOAD), routing_key="", mandatory=False)

    async def link_in() -> None:
        counting = Counting(count)
        link = RabbitLink(config, counting.callbacks(), client_id="bench-in")
        await link.connect()
        await link.subscribe([(TOPIC, 1)])
        await raw_out(False)
        await counting.done.wait()
        await link.close()

    async def consumer_in(parse: bool) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=CHUNK)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(TOPIC)
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            async with message.process():  # what Argentic's _reader does
                if parse:
                    json.loads(message.body)
                received += 1
                if received == count:
                    done.set()

        await queue.consume(on_message)
        await raw_out(False)
        await done.wait()
        await channel.close()

    async def consumer(topic: str, seen: list[int]) -> Callable[[], Awaitable[None]]:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=CHUNK)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(topic)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            seen[0] += 1

        await queue.consume(on_message)
        return channel.close

    uplink = bench_uplink("rabbitmq", node.port)
    for _ in range(repeats):
        found = await through_appliance(
            uplink, count, consumer, lambda topic: raw_out(False, topic)
        )
        for path, rate in found.items():
            rates.setdefault(path, []).append(rate)
        for name, job, n in [
            ("link out QoS 1", lambda: link_out(1), count),
            ("raw out QoS 1", lambda: raw_out(True), count),
            ("link out QoS 0", lambda: link_out(0), count),
            ("raw out QoS 0", lambda: raw_out(False), count),
            ("argentic out", argentic_out, count // 10),
            ("link in", link_in, count),
            ("raw in", lambda: consumer_in(False), count),
            ("argentic in", lambda: consumer_in(True), count),
        ]:
            rates.setdefault(name, []).append(await timed(job, n))
    await connection.close()
    return rows("RabbitMQ (argentic exchanges)", rates, "aio-pika, 1000 confirms in flight")


def rows(protocol: str, rates: dict[str, list[float]], raw: str) -> list[dict[str, Any]]:
    """Rows: link against raw, and link against Argentic's pattern, per direction."""
    found = []
    for path in ("out", "in", "out, route both ways"):
        ours, raw_rate = median(rates[f"appliance {path}"]), median(rates["raw in"])
        goal = (
            "no goal: its own messages come back and are dropped"
            if "both" in path
            else (f"goal ≥ {GOAL_RAW:g}")
        )
        found.append(
            {
                "scenario": f"{protocol} {path}: through the appliance / raw",
                "ours": ours,
                "baseline": raw_rate,
                "ratio": ratio(ours, raw_rate),
                "unit": f"msg/s, publisher to subscriber ({goal}; raw = {raw})",
            }
        )
    for link_name in [name for name in rates if name.startswith("link")]:
        suffix = link_name.removeprefix("link")
        ours = median(rates[link_name])
        direction = suffix.split()[0]
        for against, goal in ((f"raw{suffix}", GOAL_RAW), (f"argentic {direction}", GOAL_ARGENTIC)):
            if against not in rates or (against.startswith("argentic") and "QoS 0" in suffix):
                continue
            found.append(
                {
                    "scenario": f"{protocol}{suffix}: link / {against.split()[0]}",
                    "ours": ours,
                    "baseline": median(rates[against]),
                    "ratio": ratio(ours, median(rates[against])),
                    "unit": f"msg/s (goal ≥ {goal:g}; raw = {raw})"
                    if against.startswith("raw")
                    else f"msg/s (goal ≥ {goal:g} for out)",
                }
            )
    return found


def run(quick: bool) -> list[dict[str, Any]]:
    count, repeats = (5000, 1) if quick else (20000, 3)
    with tempfile.TemporaryDirectory(prefix="bench-redis-rabbit-") as work:
        redis_server = RedisServer(Path(work) / "redis").start()
        node = RabbitServer(Path(work) / "rabbitmq").start()
        try:
            found = asyncio.run(redis_rows(redis_server, count, repeats))
            found += asyncio.run(rabbit_rows(node, count, repeats))
        finally:
            redis_server.stop()
            node.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "the raw client, or Argentic's driver pattern", __doc__ or "", argv)


if __name__ == "__main__":
    raise SystemExit(main())
