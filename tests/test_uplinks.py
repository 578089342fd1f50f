"""Several uplinks at once, against two real Mosquitto brokers: routing to each, isolation when
one broker dies, no loops with ``#`` both ways on both, and live apply that restarts only the
uplink whose entry changed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from argentic_edge.app import Edge
from argentic_edge.config import EdgeConfig, parse_config
from tests.support.bridge import (
    BusClient,
    MqttClient,
    SaysSessionTakenOver,
    matching,
    message,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto
from tests.support.config import bus_section, config_document, fresh_data_dir


def uplink(name: str, port: int, routes: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": "mqtt",
        "broker_address": "127.0.0.1",
        "port": port,
        "connect_retry_delay": 0.1,
        "keepalive": 10,
        "routes": routes,
        **keys,
    }


def two_uplinks(
    first: dict[str, Any],
    second: dict[str, Any],
    bus: dict[str, Any] | None = None,
    data: Path | None = None,
) -> EdgeConfig:
    """An appliance with only the bus (on ``bus``, else free ports) and two uplinks
    (``bridge:`` off, no Home Assistant), its data directory ``data`` or a new one."""
    return parse_config(
        config_document(
            data or fresh_data_dir(),
            node_name="twin",
            messaging=bus or bus_section(),
            bridge={"enabled": False, "ha_discovery": False},
            uplinks=[first, second],
        ),
        env={},
    )


@pytest.fixture
def brokers(tmp_path: Path) -> Any:
    started = [Mosquitto(tmp_path / name).start() for name in ("a", "b")]
    yield started
    for broker in started:
        broker.stop()


def service(edge: Edge, name: str) -> Any:
    return edge.services[f"uplink:{name}"]


async def connected(edge: Edge, *names: str) -> None:
    for name in names:
        await wait_until(
            lambda name=name: service(edge, name).state == "connected",  # type: ignore[misc]
            what=f"uplink {name} to connect",
        )


async def test_each_uplink_carries_its_own_routes(brokers: list[Mosquitto]) -> None:
    a, b = brokers
    config = two_uplinks(
        uplink(
            "a",
            a.port,
            [{"topic": "agent/#", "direction": "out"}, {"topic": "in/a/#", "direction": "in"}],
        ),
        uplink(
            "b",
            b.port,
            [{"topic": "logs/#", "direction": "out"}, {"topic": "in/b/#", "direction": "in"}],
        ),
    )
    async with Edge(config) as edge, MqttClient(a.port) as on_a, MqttClient(b.port) as on_b:
        await connected(edge, "a", "b")
        assert [entry["name"] for entry in edge.status()["uplinks"]] == ["a", "b"]
        bus = BusClient(edge, subscribe="in/")
        try:
            await on_a.subscribe("#")
            await on_b.subscribe("#")
            await prove_paths(
                bus, on_a, out=("agent/probe", "agent/probe"), into=("in/a/p", "in/a/p")
            )
            await prove_paths(
                bus, on_b, out=("logs/probe", "logs/probe"), into=("in/b/p", "in/b/p")
            )
            await bus.send("agent/x/status", message("A"))
            await bus.send("logs/x", message("L"))
            await on_a.publish("in/a/1", message("IA"))
            await on_b.publish("in/b/1", message("IB"))
            got_a = matching(await on_a.quiet(0.5), "+/x/#") + matching(
                await on_a.quiet(0), "logs/#"
            )
            got_b = matching(await on_b.quiet(0.5), "#")
            assert [item.topic for item in got_a] == ["agent/x/status"]
            assert [item.topic for item in matching(got_b, "agent/#")] == []
            assert [item.topic for item in matching(got_b, "logs/#")] == ["logs/x"]
            assert sorted(item.topic for item in await bus.take(2)) == ["in/a/1", "in/b/1"]
            routes = {entry["name"]: entry["routes"] for entry in edge.status()["uplinks"]}
            assert routes["a"][0]["out"]["messages"] >= 2  # probe + message
            assert routes["b"][0]["out"]["messages"] >= 2
        finally:
            bus.close()


async def test_one_dead_broker_leaves_the_other_uplink_flowing(brokers: list[Mosquitto]) -> None:
    a, b = brokers
    routes = [{"topic": "agent/#", "direction": "out", "qos": 1}]
    config = two_uplinks(uplink("a", a.port, routes), uplink("b", b.port, routes))
    async with Edge(config) as edge, MqttClient(a.port) as on_a:
        await connected(edge, "a", "b")
        bus = BusClient(edge)
        try:
            await on_a.subscribe("agent/#")
            await prove_paths(bus, on_a, out=("agent/probe", "agent/probe"))
            b.kill()
            await wait_until(lambda: service(edge, "b").state != "connected", what="b to notice")
            sent = [(f"agent/flow/{i}", message("F", i=i)) for i in range(50)]
            for topic, payload in sent:
                await bus.send(topic, payload)
            got = await on_a.take(len(sent))
            assert [(item.topic, item.payload) for item in got] == sent
            up, reasons = edge.health()
            assert not up and len(reasons) == 1 and reasons[0].startswith("uplink:b: "), reasons
            assert service(edge, "a").state == "connected"
            await wait_until(
                lambda: service(edge, "b").status().buffer["messages"] == len(sent),
                what="b's outbox to hold what it could not send",
            )
        finally:
            bus.close()


async def test_hash_both_ways_on_two_brokers_arrives_exactly_once_everywhere(
    brokers: list[Mosquitto],
) -> None:
    """The loop test across uplinks: broker A <-> bus <-> broker B, ``#`` both ways on both."""
    a, b = brokers
    everything = [{"topic": "#", "direction": "both"}]
    config = two_uplinks(uplink("a", a.port, everything), uplink("b", b.port, everything))
    async with Edge(config) as edge, MqttClient(a.port) as on_a, MqttClient(b.port) as on_b:
        await connected(edge, "a", "b")
        bus = BusClient(edge)
        try:
            for client in (on_a, on_b):
                await client.subscribe("#")
            await prove_paths(bus, on_a, out=("probe/a", "probe/a"), into=("probe/a2", "probe/a2"))
            await prove_paths(bus, on_b, out=("probe/b", "probe/b"), into=("probe/b2", "probe/b2"))
            sent = {
                "loop/from-a": message("A"),
                "loop/from-b": message("B"),
                "loop/from-bus": message("Z"),
            }
            await on_a.publish("loop/from-a", sent["loop/from-a"])
            await on_b.publish("loop/from-b", sent["loop/from-b"])
            await bus.send("loop/from-bus", sent["loop/from-bus"])
            expected = sorted(sent.items())
            for side in (on_a, on_b, bus):
                got = matching(await side.take(3) + await side.quiet(1.0), "loop/#")
                assert sorted((item.topic, item.payload) for item in got) == expected
        finally:
            bus.close()


async def test_live_apply_restarts_only_the_changed_uplink(brokers: list[Mosquitto]) -> None:
    a, b = brokers
    routes = [{"topic": "agent/#", "direction": "out"}]
    config = two_uplinks(uplink("a", a.port, routes), uplink("b", b.port, routes))
    changed = two_uplinks(
        uplink("a", a.port, routes),
        uplink("b", b.port, [{"topic": "logs/#"}]),
        _bus_of(config),
        config.data_path,
    )
    async with Edge(config) as edge, MqttClient(b.port) as on_b:
        await connected(edge, "a", "b")
        first_a, first_b = service(edge, "a"), service(edge, "b")
        assert await edge.apply(changed) == ["uplink:b"]
        await connected(edge, "b")
        assert service(edge, "a") is first_a and first_a.connections == 1
        assert service(edge, "b") is not first_b and service(edge, "b").connections == 1
        bus = BusClient(edge)
        try:
            await on_b.subscribe("logs/#")
            await prove_paths(bus, on_b, out=("logs/probe", "logs/probe"))
        finally:
            bus.close()


def _bus_of(config: EdgeConfig) -> dict[str, Any]:
    """The bus section of ``config`` as written (the same ports, so the bus does not restart)."""
    bus = config.messaging
    return bus_section(bus.port, bus.backend_port)


async def test_an_agents_client_id_is_never_taken(
    brokers: list[Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19: an agent's ``messaging:`` block names the agent's client id; the appliance
    connects with its own, and says so."""
    caplog.set_level(logging.WARNING, logger="argentic_edge.bridge.service")
    a, _ = brokers
    document = config_document(fresh_data_dir(), node_name="agentnode")
    del document["bridge"]
    document["messaging"] = {
        "protocol": "mqtt",
        "broker_address": "127.0.0.1",
        "port": a.port,
        "client_id": "the-agent",
        "connect_retry_delay": 0.1,
    }
    config = parse_config(document, env={})
    async with (
        MqttClient(a.port, client_id="the-agent", protocol=paho.MQTTv5) as agent,
        Edge(config) as edge,
    ):
        await connected(edge, "mqtt")
        assert service(edge, "mqtt").status().link["client_id"] == "argentic-edge-agentnode"
        assert agent.connected.is_set(), "the agent was not thrown off"
    said = [r.getMessage() for r in caplog.records if "the-agent" in r.getMessage()]
    assert len(said) == 1 and "agent's own client id" in said[0], said


async def test_a_session_taken_over_is_said_so_once(
    brokers: list[Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19: another client with our client id, reconnecting each time it is thrown off,
    on a broker that says why it closes the older connection (MQTT 5 reason 0x8E)."""
    caplog.set_level(logging.DEBUG, logger="argentic_edge.bridge.service")
    a, b = brokers
    routes = [{"topic": "agent/#", "direction": "out"}]
    async with SaysSessionTakenOver(a.port) as relay:
        config = two_uplinks(
            uplink("a", relay.port, routes, client_id="shared-id"), uplink("b", b.port, routes)
        )
        async with Edge(config) as edge:
            await connected(edge, "a", "b")
            async with MqttClient(
                relay.port, client_id="shared-id", protocol=paho.MQTTv5, auto_reconnect=True
            ):
                await wait_until(
                    lambda: "session taken over" in (service(edge, "a").last_error or ""),
                    what="the uplink to say the session was taken over",
                )
                await wait_until(lambda: relay.taken_over >= 3, what="more take-overs")
            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.levelno >= logging.WARNING and "session taken over" in r.getMessage()
            ]
            assert len(warnings) == 1, warnings
            assert "another client connected with our client id 'shared-id'" in warnings[0]
            assert service(edge, "b").connections == 1  # the other uplink never noticed
