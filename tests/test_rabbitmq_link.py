"""RabbitLink against a real RabbitMQ node, driven through the Link interface (callbacks harness).

The other side is plain aio-pika declaring exchanges exactly as Argentic's RabbitMQ driver does
(``declare_exchange(topic, FANOUT)``), so a declaration mismatch would close a channel here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from argentic_edge.bridge.link import ConnectError
from argentic_edge.bridge.rabbitmq import RabbitLink, binding_key, swap_separators
from argentic_edge.config import RabbitConfig, Secret, TlsParams
from argentic_edge.topics import parse_filter
from tests.support.brokers import free_port, wait_for_port
from tests.support.links import Recorder, publication
from tests.support.pki import Pki
from tests.support.rabbitmq import RabbitServer


def make_link(node: RabbitServer, recorder: Recorder, **keys: object) -> RabbitLink:
    config = RabbitConfig(broker_address="127.0.0.1", port=node.port, **keys)  # type: ignore[arg-type]
    return RabbitLink(config, recorder.callbacks(), client_id=f"edge-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def other(rabbitmq: RabbitServer) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """The other side: an aio-pika channel, as an Argentic agent's driver has one."""
    connection = await aio_pika.connect(rabbitmq.url)
    channel = await connection.channel()
    yield channel
    await connection.close()


async def argentic_queue(
    channel: aio_pika.abc.AbstractChannel, topic: str
) -> aio_pika.abc.AbstractQueue:
    """What Argentic's driver does in subscribe(): its fanout exchange, an exclusive queue."""
    exchange = await channel.declare_exchange(topic, aio_pika.ExchangeType.FANOUT)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange)
    return queue


async def drain(
    queue: aio_pika.abc.AbstractQueue, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            got.append(message)
            if len(got) == count:
                break
    return got


def test_amq_topic_names_follow_the_mqtt_plugin() -> None:
    assert swap_separators("a/b.c/d") == "a.b/c.d"
    assert binding_key(parse_filter("sensors/+/temp")) == "sensors.*.temp"
    assert binding_key(parse_filter("home/v1.2/#")) == "home.v1/2.#"


async def test_argentic_mode_publishes_as_argentic_with_confirms(
    rabbitmq: RabbitServer, other: aio_pika.abc.AbstractChannel
) -> None:
    queue = await argentic_queue(other, "agent/pub/status")
    recorder = Recorder()
    link = make_link(rabbitmq, recorder)
    session = await link.connect()
    assert session.description.startswith("RabbitMQ 3.")
    for number in range(300):
        link.publish(publication("agent/pub/status", number, qos=1 if number % 2 else 0))
    await recorder.wait(lambda: len(recorder.settled) == 300)
    assert set(recorder.settled.values()) == {None}
    assert link.status()["confirmed"] == 150
    got = await asyncio.wait_for(drain(queue, 300), 10)
    assert sorted(json.loads(m.body)["n"] for m in got) == list(range(300))
    assert {m.routing_key for m in got} == {""}
    assert {m.delivery_mode for m in got} == {aio_pika.DeliveryMode.NOT_PERSISTENT}
    assert link.status()["per_batch"] > 1  # a burst is written in runs, not one by one
    exchanges = rabbitmq.ctl("list_exchanges", "name", "type", "durable", "auto_delete")
    assert "agent/pub/status\tfanout\tfalse\tfalse" in exchanges
    await link.close()


async def test_argentic_mode_receives_exact_and_learned_exchanges(
    rabbitmq: RabbitServer, other: aio_pika.abc.AbstractChannel
) -> None:
    recorder = Recorder()
    link = make_link(rabbitmq, recorder)
    await link.connect()
    await link.subscribe([("agent/x/ask", 1), ("agent/+/reply", 1)])

    async def send(topic: str, body: bytes) -> None:
        # Argentic's publish(): re-declare the exchange, then publish with routing key "".
        exchange = await other.declare_exchange(topic, aio_pika.ExchangeType.FANOUT)
        await exchange.publish(aio_pika.Message(body), routing_key="")

    await send("agent/x/ask", b'{"q": 1}')
    await send("agent/y/reply", b'{"r": 0}')  # nobody on the bus used it yet: not seen
    await recorder.wait(lambda: recorder.messages)
    link.publish(publication("agent/y/reply", 1))  # the bus side names it: learned
    await recorder.wait(lambda: len(recorder.settled) == 1)
    await send("agent/y/reply", b'{"r": 2}')
    await recorder.wait(lambda: len(recorder.messages) >= 3)
    assert recorder.messages[0] == ("agent/x/ask", b'{"q": 1}')
    # our own publication comes back (the service's loop guard drops it), then the agent's
    assert [topic for topic, _ in recorder.messages] == ["agent/x/ask"] + ["agent/y/reply"] * 2
    assert recorder.messages[2][1] == b'{"r": 2}'
    await link.close()


async def test_messages_are_acknowledged_only_when_the_service_says(
    rabbitmq: RabbitServer, other: aio_pika.abc.AbstractChannel
) -> None:
    recorder = Recorder(auto_ack=False)
    link = make_link(rabbitmq, recorder)
    await link.connect()
    await link.subscribe([("agent/acks", 1)])
    exchange = await other.declare_exchange("agent/acks", aio_pika.ExchangeType.FANOUT)
    for number in range(5):
        await exchange.publish(aio_pika.Message(json.dumps(number).encode()), routing_key="")
    await recorder.wait(lambda: len(recorder.messages) == 5)

    def unacked() -> str:
        rows = rabbitmq.ctl("list_queues", "name", "messages_unacknowledged")
        return next(line for line in rows.splitlines() if line.startswith(link.queue))

    assert unacked().endswith("\t5")
    for ack in recorder.unacked[:2]:
        ack()
    await asyncio.sleep(0.3)
    assert unacked().endswith("\t3")
    await link.close()


async def test_amq_topic_mode_meets_mqtt_plugin_names(
    rabbitmq: RabbitServer, other: aio_pika.abc.AbstractChannel
) -> None:
    amq_topic = await other.get_exchange("amq.topic")
    queue = await other.declare_queue(exclusive=True)
    await queue.bind(amq_topic, routing_key="sensors.#")
    recorder = Recorder()
    link = make_link(rabbitmq, recorder, exchange_mode="amq.topic")
    await link.connect()
    await link.subscribe([("sensors/+/temp", 1)])
    link.publish(publication("sensors/v1.2/raw", 1))
    got = await asyncio.wait_for(drain(queue, 1), 10)
    assert got[0].routing_key == "sensors.v1/2.raw"
    assert got[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT  # QoS 1 survives restarts
    await amq_topic.publish(aio_pika.Message(b'{"t": 21}'), routing_key="sensors.kitchen.temp")
    await amq_topic.publish(aio_pika.Message(b"{}"), routing_key="sensors.+.temp")
    await amq_topic.publish(aio_pika.Message(b"21 degrees"), routing_key="sensors.hall.temp")
    await amq_topic.publish(aio_pika.Message(b'{"t": 19}'), routing_key="sensors.last.temp")
    await recorder.wait(lambda: len(recorder.messages) == 2)
    assert recorder.messages == [
        ("sensors/kitchen/temp", b'{"t": 21}'),
        ("sensors/last/temp", b'{"t": 19}'),
    ]
    assert link.status()["dropped_inbound"] == {"wildcard_in_topic": 1, "not_json": 1}
    await link.close()


async def test_illegal_names_are_refused_not_sent(rabbitmq: RabbitServer) -> None:
    recorder = Recorder()
    link = make_link(rabbitmq, recorder)
    await link.connect()
    problems = await link.subscribe([("amq.x/y", 1), ("agent/" + "a" * 300, 1)])
    assert set(problems) == {"amq.x/y", "agent/" + "a" * 300}
    link.publish(publication("amq.reserved", 1))
    link.publish(publication("agent/" + "b" * 300, 2))
    link.publish(publication("agent/fine", 3))
    await recorder.wait(lambda: len(recorder.settled) == 3)
    assert recorder.settled[1] is not None and "reserved" in recorder.settled[1]
    assert recorder.settled[2] == "topic_too_long"
    assert recorder.settled[3] is None
    assert not recorder.lost  # the channel stayed open
    await link.close()


async def test_wrong_credentials_are_explained(rabbitmq: RabbitServer) -> None:
    link = make_link(rabbitmq, Recorder(), password=Secret("wrong"))
    with pytest.raises(ConnectError, match="refused the credentials"):
        await link.connect()


async def test_a_killed_broker_is_reported_and_the_link_comes_back(tmp_path: Path) -> None:
    node = RabbitServer(tmp_path / "own-node").start()
    try:
        recorder = Recorder()
        link = make_link(node, recorder)
        await link.connect()
        await link.subscribe([("agent/back", 1)])
        node.kill()
        await recorder.wait(lambda: recorder.lost, timeout=20)
        node.start()
        await link.connect()  # waits for aio-pika's robust reconnection, declares again
        connection = await aio_pika.connect(node.url)
        channel = await connection.channel()
        exchange = await channel.declare_exchange("agent/back", aio_pika.ExchangeType.FANOUT)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="")
        await recorder.wait(lambda: recorder.messages)
        await connection.close()
        await link.close()
    finally:
        node.stop()


async def test_amqps_with_the_seeds_tls_params(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    tls_port = free_port()
    node = RabbitServer(
        tmp_path / "tls-node",
        config_lines=[
            f"listeners.ssl.default = {tls_port}",
            f"ssl_options.cacertfile = {pki.ca}",
            f"ssl_options.certfile = {pki.server_cert}",
            f"ssl_options.keyfile = {pki.server_key}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ],
    ).start()
    try:
        wait_for_port(tls_port)
        recorder = Recorder()
        config = RabbitConfig(
            broker_address="localhost", port=tls_port, tls_params=TlsParams(ca_certs=str(pki.ca))
        )
        link = RabbitLink(config, recorder.callbacks(), client_id="edge-tls")
        assert link.where.startswith("amqps://")
        await link.connect()
        link.publish(publication("agent/tls", 1))
        await recorder.wait(lambda: recorder.settled == {1: None})
        await link.close()
        untrusted = RabbitLink(
            RabbitConfig(
                broker_address="localhost",
                port=tls_port,
                tls_params=TlsParams(ca_certs=str(pki.other_ca)),
            ),
            Recorder().callbacks(),
            client_id="edge-tls2",
        )
        with pytest.raises(ConnectError, match=r"certificate of .* is not trusted"):
            await untrusted.connect()
    finally:
        node.stop()
