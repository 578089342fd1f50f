"""The broker goes away and comes back: buffering, order, persistent sessions, back-off."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

from argentic_edge.app import Edge
from tests.support.bridge import (
    BusClient,
    MqttClient,
    bridge_of,
    edge_config,
    message,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto, free_port

ROUTES = [{"topic": "agent/#", "direction": "both", "qos": 1}]


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A broker whose persistence survives a restart (tests/support/brokers.py keeps it able to write
    its database in the test's private directory)."""
    return mosquitto_factory()


async def test_outage_buffers_and_replays_in_order_exactly_once(broker: Mosquitto) -> None:
    config = edge_config(broker.port, bridge={"routes": ROUTES})
    async with (
        Edge(config) as edge,
        MqttClient(broker.port, client_id="watcher", clean=False, auto_reconnect=True) as mqtt,
    ):
        bridge = bridge_of(edge)
        bus = BusClient(edge, subscribe="agent/mqtt/")
        try:
            await mqtt.subscribe("agent/bus/#", qos=1)
            await prove_paths(
                bus,
                mqtt,
                out=("agent/bus/probe", "agent/bus/probe"),
                into=("agent/mqtt/probe", "agent/mqtt/probe"),
            )

            buffered_before = bridge.status().routes[0]["out"]["buffered"]  # early probes
            broker.stop()
            await wait_until(lambda: bridge.state != "connected", what="the bridge to notice")
            count = 30
            from_bus = [(f"agent/bus/{i}", message("B", i=i)) for i in range(count)]
            from_mqtt = [(f"agent/mqtt/{i}", message("M", i=i)) for i in range(count)]
            for topic, payload in from_bus:
                await bus.send(topic, payload)
            for topic, payload in from_mqtt:  # paho holds them until its broker is back
                mqtt.publish_nowait(topic, payload, qos=1)
            await wait_until(
                lambda: bridge.status().buffer["messages"] == count,
                what="the bus messages to wait in the outbox",
            )
            assert bridge.health()[0] is False
            broker.start()

            on_mqtt = await mqtt.take(count, timeout=10)
            on_bus = await bus.take(count, timeout=10)
            assert [(m.topic, m.payload) for m in on_mqtt] == from_bus
            assert [(m.topic, m.payload) for m in on_bus] == from_mqtt
            assert not await mqtt.quiet() and not await bus.quiet(0.1)
            status = asdict(bridge.status())
            assert status["state"] == "connected" and status["connections"] == 2
            assert status["buffer"]["messages"] == 0
            assert status["routes"][0]["out"]["buffered"] - buffered_before == count
        finally:
            bus.close()


async def test_full_outbox_drops_the_oldest_and_counts(broker: Mosquitto) -> None:
    config = edge_config(
        broker.port,
        bridge={"routes": ROUTES, "buffer": {"max_messages": 5, "max_bytes": 1_000_000}},
    )
    async with (
        Edge(config) as edge,
        MqttClient(broker.port, client_id="watcher2", clean=False, auto_reconnect=True) as mqtt,
    ):
        bridge = bridge_of(edge)
        bus = BusClient(edge)
        try:
            await mqtt.subscribe("agent/#", qos=1)
            await prove_paths(bus, mqtt, out=("agent/probe", "agent/probe"))
            broker.stop()
            await wait_until(lambda: bridge.state != "connected", what="the bridge to notice")
            sent = [(f"agent/n/{i}", message("N", i=i)) for i in range(20)]
            for topic, payload in sent:
                await bus.send(topic, payload)
            await wait_until(
                lambda: bridge.status().buffer["dropped_oldest"] == 15,
                what="the outbox to overflow",
            )
            broker.start()
            got = await mqtt.take(5, timeout=10)
            assert [(m.topic, m.payload) for m in got] == sent[-5:]
            assert not await mqtt.quiet()
            route = bridge.status().routes[0]["out"]
            assert route["dropped"] == {"buffer_full": 15}
            assert route["messages"] == 5 + 1  # and the probe before the outage
        finally:
            bus.close()


@pytest.mark.parametrize("clean_session", [False, True])
async def test_what_was_sent_while_the_bridge_was_away(
    broker: Mosquitto, clean_session: bool
) -> None:
    """clean_session false + fixed client id: QoS 1 messages sent while the bridge was stopped
    arrive on the bus when it starts again; with a clean session they are gone."""
    config = edge_config(
        broker.port,
        bridge={"routes": ROUTES},
        mqtt={"client_id": f"edge-{clean_session}", "clean_session": clean_session},
    )
    without_bridge = dataclasses.replace(  # as parse_config reads bridge.enabled: false
        config, bridge=dataclasses.replace(config.bridge, enabled=False), uplinks=()
    )
    async with Edge(config) as edge, MqttClient(broker.port) as mqtt:
        bus = BusClient(edge, subscribe="agent/")
        try:
            await prove_paths(bus, mqtt, into=("agent/probe", "agent/probe"))
            assert await edge.apply(without_bridge) == []  # the bridge stops; the bus stays
            assert "uplink:mqtt" not in edge.services
            sent = [(f"agent/while-away/{i}", message("W", i=i)) for i in range(10)]
            for topic, payload in sent:
                await mqtt.publish(topic, payload, qos=1)
            assert await edge.apply(config) == ["uplink:mqtt"]
            await prove_paths(bus, mqtt, into=("agent/probe", "agent/probe"))
            got = [(m.topic, m.payload) for m in await bus.quiet(0.2)]
            assert got == ([] if clean_session else sent)
        finally:
            bus.close()


async def test_unreachable_broker_backs_off_then_gives_up() -> None:
    port = free_port()  # nothing listens there
    config = edge_config(port, mqtt={"max_reconnect_attempts": 3, "connect_retry_delay": 0.05})
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "backing off", what="the first back-off")
        assert "next attempt in" in bridge.status().detail
        up, reason = bridge.health()
        assert not up and "refused the connection" in reason
        await wait_until(lambda: bridge.state == "gave up", timeout=5, what="giving up")
        status = asdict(bridge.status())
        assert status["detail"] == (
            f"gave up after 3 attempts: 127.0.0.1:{port} refused the "
            "connection (is the broker running and listening there?)"
        )
        assert status["attempts"] == 3
        assert edge.health() == (False, [f"uplink:mqtt: {status['detail']}"])


async def test_a_broker_appearing_later_is_picked_up(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "late")
    config = edge_config(broker.port)
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.attempts >= 2, what="a few failed attempts")
        broker.start()
        try:
            await wait_until(
                lambda: bridge.state == "connected",
                timeout=5,
                what="the bridge to connect once the broker is up",
            )
            assert bridge.health() == (True, f"connected to 127.0.0.1:{broker.port} (MQTT 5)")
            assert bridge.status().last_error is None
        finally:
            broker.stop()
