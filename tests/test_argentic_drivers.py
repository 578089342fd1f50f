"""Argentic 0.16.6's own Redis and RabbitMQ drivers against the uplink links, both directions.

The RabbitMQ driver runs as shipped. The Redis driver cannot be imported on Python 3.11+ (its
aioredis dependency defines a class with a duplicate base), shown first; then it runs with the
one change docs/redis.md gives (redis-py's asyncio client in place of aioredis).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from argentic_edge.bridge.link import Link, Publication
from argentic_edge.bridge.rabbitmq import RabbitLink
from argentic_edge.bridge.redis import RedisLink
from argentic_edge.config import RabbitConfig, RedisConfig
from tests.support.argentic_drivers import collector, message_models, rabbit_agent, redis_agent
from tests.support.links import Recorder
from tests.support.rabbitmq import RabbitServer
from tests.support.redis import RedisServer

REPO = Path(__file__).resolve().parents[1]


def test_stock_argentic_redis_driver_fails_on_this_python() -> None:
    """aioredis 2.0.1 breaks on 3.11 at import (TimeoutError became a builtin it subclasses
    twice) and on 3.12+ (the add-on's 3.13) for want of distutils, an ImportError the driver
    catches: the module then imports, and making a driver says aioredis is not installed."""
    code = (
        "from tests.support.argentic_drivers import driver_module\n"
        "from argentic.core.messager.drivers.configs import RedisDriverConfig\n"
        "driver_module('RedisDriver').RedisDriver(RedisDriverConfig(url='127.0.0.1', port=1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    if sys.version_info < (3, 12):
        assert "TypeError: duplicate base class TimeoutError" in result.stderr
        assert "aioredis" in result.stderr
    else:
        assert "ImportError: aioredis is not installed" in result.stderr
        direct = subprocess.run(
            [sys.executable, "-c", "import aioredis"], capture_output=True, text=True, timeout=60
        )
        assert "No module named 'distutils'" in direct.stderr


async def listening(link: Link, topic_filter: str) -> None:
    """Connect ``link`` and subscribe it to ``topic_filter`` at QoS 1."""
    await link.connect()
    await link.subscribe([(topic_filter, 1)])


def reply_body(models: Any, text: str) -> bytes:
    return models.DataMessage(source="bus-agent", data={"answer": text}).model_dump_json().encode()


async def test_argentic_redis_driver_with_the_fix_meets_the_redis_link(
    redis_server: RedisServer,
) -> None:
    models = message_models()
    driver = await redis_agent(redis_server.port)
    received, handler = collector()
    await driver.subscribe("agent/r1/response", handler)
    recorder = Recorder()
    link = RedisLink(
        RedisConfig(broker_address="127.0.0.1", port=redis_server.port),
        recorder.callbacks(),
        client_id="edge",
        node_id="n1",
        consumer="n1-r",
    )
    await listening(link, "agent/+/ask")
    await asyncio.sleep(0.2)
    ask = models.DataMessage(source="redis-agent", data={"question": "ping?"})
    await driver.publish("agent/r1/ask", ask)
    await recorder.wait(lambda: recorder.messages)
    topic, payload = recorder.messages[0]
    assert topic == "agent/r1/ask"
    assert payload == ask.model_dump_json().encode()  # the driver's JSON, byte for byte

    body = reply_body(models, "pong")
    link.publish(Publication("agent/r1/response", body, 1, False, "t"))
    await recorder.wait(lambda: received)
    assert received[0].type == "DATA" and received[0].data == {"answer": "pong"}
    assert received[0].source == "bus-agent"
    await driver.disconnect()
    await link.close()


async def test_argentic_rabbitmq_driver_meets_the_rabbit_link(rabbitmq: RabbitServer) -> None:
    models = message_models()
    driver = await rabbit_agent(rabbitmq.port)
    received, handler = collector()
    recorder = Recorder()
    config = RabbitConfig(broker_address="127.0.0.1", port=rabbitmq.port)
    link = RabbitLink(config, recorder.callbacks(), client_id="edge-argentic")
    await listening(link, "agent/q1/ask")
    # The link declared agent/q1/ask first; the driver re-declares it on every publish: the
    # two declarations must be the same or RabbitMQ closes the driver's channel.
    for number in range(3):
        await driver.publish("agent/q1/ask", models.DataMessage(data={"n": number}))
    await recorder.wait(lambda: len(recorder.messages) == 3)
    assert recorder.topics() == ["agent/q1/ask"] * 3
    assert [json.loads(p)["data"] for _, p in recorder.messages] == [{"n": n} for n in range(3)]

    await driver.subscribe("agent/q1/response", handler)
    link.publish(Publication("agent/q1/response", reply_body(models, "ok"), 1, False, "t"))
    await recorder.wait(lambda: received)
    assert received[0].data == {"answer": "ok"}
    assert recorder.settled == {"t": None}
    await driver.disconnect()
    await link.close()
