"""Redis and RabbitMQ uplinks end to end: the appliance (bus, uplink service, link) against real
servers, an agent on the ZeroMQ bus on one side and redis-py, aio-pika or Argentic's own
RabbitMQ driver on the other; bad input counted by reason; each server SIGKILLed under QoS 1
load with nothing lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from argentic_edge.app import Edge
from tests.support.argentic_drivers import collector, message_models, rabbit_agent, redis_agent
from tests.support.bridge import BusClient, message, wait_until
from tests.support.config import uplinks_only
from tests.support.rabbitmq import RabbitServer
from tests.support.redis import RedisServer

LOAD = 400  # QoS 1 messages sent across a server's SIGKILL


def uplink_status(edge: Edge, name: str) -> dict[str, Any]:
    return next(entry for entry in edge.status()["uplinks"] if entry["name"] == name)


async def connected(edge: Edge, name: str, timeout: float = 30.0) -> None:
    await wait_until(
        lambda: edge.services[f"uplink:{name}"].state == "connected",
        what=f"uplink {name} to connect",
        timeout=timeout,
    )


async def until_through(send: Callable[[], Awaitable[None]], arrived: Callable[[], bool]) -> None:
    """Send probes until one arrives: a ZeroMQ PUB drops what it sends before subscriptions
    reach it, so a path is proven live before the test relies on it."""
    deadline = time.monotonic() + 15
    while not arrived():
        assert time.monotonic() < deadline, "the path never came up"
        await send()
        await asyncio.sleep(0.1)


async def send_across_kill(bus: BusClient, server: RedisServer | RabbitServer) -> None:
    """LOAD numbered QoS 1 messages on agent/load, the server SIGKILLed and restarted halfway."""
    await asyncio.sleep(0.5)  # the bus subscription of the uplink is in place
    for number in range(LOAD):
        await bus.send("agent/load", json.dumps({"n": number}).encode())
        if number == LOAD // 2:
            server.kill()
            server.start()
        await asyncio.sleep(0.002)


def none_lost(what: str, got: list[int]) -> None:
    """Every number sent arrived (duplicates are allowed at QoS 1 and printed)."""
    assert set(got) == set(range(LOAD)), f"lost {sorted(set(range(LOAD)) - set(got))}"
    print(f"{what}: {LOAD} sent, 0 lost, {len(got) - len(set(got))} duplicates")


def redis_uplink(server: RedisServer, **keys: Any) -> dict[str, Any]:
    """A Redis uplink entry for ``server``, quick to retry; ``keys`` add or override."""
    return {
        "protocol": "redis",
        "broker_address": "127.0.0.1",
        "port": server.port,
        "connect_retry_delay": 0.2,
        **keys,
    }


async def agent_gets_answer(bus: BusClient, topic: str, replies: list[Any]) -> None:
    """A bus agent answers on ``topic`` until the Argentic agent's handler has the reply."""
    answer = message_models().DataMessage(source="bus-agent", data={"answer": 4})
    body = answer.model_dump_json().encode()
    await until_through(lambda: bus.send(topic, body), lambda: bool(replies))
    assert replies[0].data == {"answer": 4} and replies[0].source == "bus-agent"


# --- Redis ----------------------------------------------------------------------------------


async def test_redis_both_ways_and_bad_input_counted(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = uplinks_only(
        tmp_path,
        redis_uplink(redis_server, max_payload=2000, routes=[{"topic": "agent/#"}]),
    )
    raw = aioredis.Redis(port=redis_server.port)
    listener = raw.pubsub()
    await listener.psubscribe("agent/*")
    seen: list[tuple[bytes, bytes]] = []

    async def listen() -> None:
        while True:
            got = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
            if got is not None:
                seen.append((got["channel"], got["data"]))

    reading = asyncio.get_running_loop().create_task(listen())
    async with Edge(config) as edge:
        await connected(edge, "redis")
        bus = BusClient(edge, subscribe="agent/in")
        try:
            body = message("A", n=1)
            await until_through(lambda: bus.send("agent/x/status", body), lambda: bool(seen))
            assert seen[0] == (b"agent/x/status", body)  # channel = topic, payload unchanged

            arrived: list[Any] = []

            async def probe_in() -> None:
                await raw.publish("agent/in/p", b"{}")
                arrived.extend(await bus.quiet(0.1))

            await until_through(probe_in, lambda: bool(arrived))
            assert arrived[0].topic == "agent/in/p"
            await bus.quiet(0.3)
            for bad_channel, payload in [
                ("agent/in/with space", b"{}"),
                ("agent/in/big", b'{"x": "' + b"y" * 3000 + b'"}'),
                ("agent/in/nj", b"not json"),
                ("agent/in/+", b"{}"),
                ("agent/in/ok", message("B")),
            ]:
                await raw.publish(bad_channel, payload)
            got = await bus.quiet(1.0)
            assert [item.topic for item in got] == ["agent/in/ok"]
            status = uplink_status(edge, "redis")
            assert status["link"]["dropped_inbound"] == {"not_json": 1, "wildcard_in_topic": 1}
            dropped = status["routes"][0]["in"]["dropped"]
            assert dropped == {"space_in_topic": 1, "too_large": 1}, status["routes"][0]
        finally:
            bus.close()
    reading.cancel()
    await listener.aclose()
    await raw.aclose()


async def test_argentic_redis_agent_and_a_bus_agent_talk(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Argentic's Redis driver, with the documented one-line fix, through the appliance."""
    config = uplinks_only(tmp_path, redis_uplink(redis_server, routes=[{"topic": "agent/#"}]))
    models = message_models()
    driver = await redis_agent(redis_server.port)
    replies, on_reply = collector()
    await driver.subscribe("agent/rd/response", on_reply)
    async with Edge(config) as edge:
        await connected(edge, "redis")
        bus = BusClient(edge, subscribe="agent/rd/ask")
        try:
            ask = models.DataMessage(source="redis-agent", data={"question": "2+2"})
            asked: list[Any] = []

            async def probe() -> None:
                await driver.publish("agent/rd/ask", ask)
                asked.extend(await bus.quiet(0.1))

            await until_through(probe, lambda: bool(asked))
            assert asked[0].topic == "agent/rd/ask"
            assert asked[0].payload == ask.model_dump_json().encode()
            await agent_gets_answer(bus, "agent/rd/response", replies)
        finally:
            bus.close()
    await driver.disconnect()


async def test_redis_streams_killed_under_load_loses_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = uplinks_only(
        tmp_path,
        redis_uplink(
            redis_server,
            mode="streams",
            routes=[{"topic": "agent/#", "direction": "out", "qos": 1}],
        ),
    )
    async with Edge(config) as edge:
        await connected(edge, "redis")
        bus = BusClient(edge)
        raw = aioredis.Redis(port=redis_server.port)
        try:
            await send_across_kill(bus, redis_server)  # same port, same append-only file
            await connected(edge, "redis")

            async def numbers() -> list[int]:
                entries = await raw.xrange("agent/load")
                return [json.loads(fields[b"payload"])["n"] for _, fields in entries]

            deadline = time.monotonic() + 30
            while len(set(await numbers())) < LOAD and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            got = await numbers()
            none_lost("redis streams kill", got)
            assert uplink_status(edge, "redis")["connections"] >= 2
        finally:
            bus.close()
            await raw.aclose()


# --- RabbitMQ -------------------------------------------------------------------------------


async def test_argentic_rabbitmq_agent_and_a_bus_agent_talk(
    tmp_path: Path, rabbitmq: RabbitServer
) -> None:
    config = uplinks_only(
        tmp_path,
        {
            "protocol": "rabbitmq",
            "broker_address": "127.0.0.1",
            "port": rabbitmq.port,
            "user": "guest",
            "password": "guest",
            "connect_retry_delay": 0.2,
            "routes": [
                {"topic": "agent/rmq/ask", "direction": "in"},
                {"topic": "agent/rmq/response", "direction": "out"},
            ],
        },
    )
    models = message_models()
    driver = await rabbit_agent(rabbitmq.port)
    replies, on_reply = collector()
    await driver.subscribe("agent/rmq/response", on_reply)
    async with Edge(config) as edge:
        await connected(edge, "rabbitmq")
        bus = BusClient(edge, subscribe="agent/rmq/ask")
        try:
            ask = models.DataMessage(source="rabbit-agent", data={"question": "2+2"})
            await driver.publish("agent/rmq/ask", ask)
            got = await bus.next(10)
            assert got.topic == "agent/rmq/ask"
            assert got.payload == ask.model_dump_json().encode()  # the driver's JSON, unchanged
            await agent_gets_answer(bus, "agent/rmq/response", replies)
        finally:
            bus.close()
    await driver.disconnect()


async def test_rabbitmq_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    node = RabbitServer(tmp_path / "node").start()
    try:
        connection = await aio_pika.connect(node.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("kill-test", durable=True)
        await queue.bind("amq.topic", routing_key="agent.#")
        await connection.close()
        config = uplinks_only(
            tmp_path,
            {
                "protocol": "rabbitmq",
                "broker_address": "127.0.0.1",
                "port": node.port,
                "exchange_mode": "amq.topic",
                "connect_retry_delay": 0.5,
                "routes": [{"topic": "agent/#", "direction": "out", "qos": 1}],
            },
        )
        async with Edge(config) as edge:
            await connected(edge, "rabbitmq")
            bus = BusClient(edge)
            try:
                await send_across_kill(bus, node)
                await connected(edge, "rabbitmq", timeout=60)
                await wait_until(
                    lambda: (
                        uplink_status(edge, "rabbitmq")["buffer"]["messages"] == 0
                        and uplink_status(edge, "rabbitmq")["in_flight"] == 0
                    ),
                    what="the outbox to empty",
                    timeout=60,
                )
            finally:
                bus.close()
        connection = await aio_pika.connect(node.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("kill-test", durable=True)
        got: list[int] = []
        while True:
            item = await queue.get(fail=False, no_ack=True)
            if item is None:
                break
            got.append(json.loads(item.body)["n"])
        await connection.close()
        none_lost("rabbitmq kill", got)
    finally:
        node.stop()
