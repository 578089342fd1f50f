"""The bridge between the bus and a real Mosquitto: wire format, routes, QoS, retain, loops,
presence and bad input, as an agent on the bus and an MQTT client see them."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from argentic_edge.app import Edge
from argentic_edge.bridge.service import presence_topic
from tests.support.appliance import environment
from tests.support.bridge import (
    BusClient,
    Mqtt311Only,
    MqttClient,
    bridge_of,
    edge_config,
    matching,
    message,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto, free_port
from tests.support.config import config_document, write_yaml


async def test_round_trip_both_ways_in_argentic_wire_format(mosquitto: Mosquitto) -> None:
    config = edge_config(mosquitto.port)  # the default routes: agent/#, tools/#, ... both ways
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge, subscribe="agent/")
        try:
            await mqtt.subscribe("agent/#")
            await prove_paths(
                bus, mqtt, out=("agent/probe", "agent/probe"), into=("agent/probe", "agent/probe")
            )

            ask = message("ASK_QUESTION", question="why?", data={"é": [1, 2.5, None]})
            await bus.send("agent/command/ask_question", ask)
            got = await mqtt.next()
            assert (got.topic, got.payload) == ("agent/command/ask_question", ask)

            answer = message("ANSWER", answer="because")
            await mqtt.publish("agent/response/answer", answer)
            frames = {(item.topic, item.payload) for item in await bus.take(2)}
            # the bus subscriber sees its own question too; the answer arrives as '<topic> <json>'
            assert ("agent/response/answer", answer) in frames
            assert not await bus.quiet()

            status = asdict(bridge_of(edge).status())
            agent_route = status["routes"][0]
            assert agent_route["topic"] == "agent/#"
            assert agent_route["out"]["messages"] >= 1
            assert agent_route["in"]["messages"] >= 1
            assert edge.health() == (True, [])
            assert json.loads(json.dumps(edge.status()))["bridge"]["state"] == "connected"
        finally:
            bus.close()


async def test_wildcards_and_prefixes_rewrite_topics(mosquitto: Mosquitto) -> None:
    routes = [
        {"topic": "tools/+/status", "direction": "out", "remote_prefix": "site/kitchen/"},
        {
            "topic": "cmd/#",
            "direction": "in",
            "remote_prefix": "site/kitchen/",
            "local_prefix": "remote/",
        },
    ]
    config = edge_config(mosquitto.port, bridge={"routes": routes})
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge, subscribe="remote/")
        try:
            await mqtt.subscribe("site/#")
            await prove_paths(
                bus,
                mqtt,
                out=("tools/probe/status", "site/kitchen/tools/probe/status"),
                into=("site/kitchen/cmd/probe", "remote/cmd/probe"),
            )

            payload = message("STATUS", state="ok")
            await bus.send("tools/search/status", payload)
            await bus.send("tools/search/deep/status", payload)  # + is one level: not routed
            await bus.send("tools/search/register", payload)  # not under any route
            got = await mqtt.next()
            assert (got.topic, got.payload) == ("site/kitchen/tools/search/status", payload)
            assert not await mqtt.quiet()

            command = message("CALL", args={"x": 1})
            await mqtt.publish("site/kitchen/cmd/lights/on", command)
            await mqtt.publish("site/other/cmd/lights/on", command)  # other prefix: not ours
            got_bus = await bus.next()
            assert (got_bus.topic, got_bus.payload) == ("remote/cmd/lights/on", command)
            assert not await bus.quiet()
        finally:
            bus.close()


async def test_qos_and_retain_per_route_and_by_category(mosquitto: Mosquitto) -> None:
    routes = [
        {"topic": "exact/#", "direction": "out", "qos": 2, "retain": True},
        {"topic": "agent/#", "direction": "out", "qos": "auto", "retain": "auto"},
        {"topic": "inbound/#", "direction": "in", "qos": 2},
    ]
    mqtt_keys = {"retain_messages": {"status": True}, "qos_levels": {"tool_calls": 2}}
    config = edge_config(mosquitto.port, bridge={"routes": routes}, mqtt=mqtt_keys)
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge)
        try:
            for topic_filter in ("exact/#", "agent/#"):
                await mqtt.subscribe(topic_filter, qos=2)
            await prove_paths(bus, mqtt, out=("exact/probe", "exact/probe"))
            cases = {
                "exact/thing": (2, True),
                "agent/tools/call/t1": (2, False),  # tool_calls: qos from qos_levels
                "agent/status/info": (0, True),  # status: qos 0, retained by retain_messages
                "agent/log": (0, False),  # logs
                "agent/unknown/x": (0, False),  # uncategorized
            }
            for topic in cases:
                await bus.send(topic, message("T", topic=topic))
            got = {item.topic: (item.qos, item.retain) for item in await mqtt.take(len(cases))}
            # a live subscriber is never sent the retain flag; the late one below proves it
            assert {topic: qos for topic, (qos, _) in got.items()} == {
                topic: qos for topic, (qos, _) in cases.items()
            }

            async with MqttClient(mosquitto.port) as late:
                await late.subscribe("#", qos=2)
                retained = {item.topic for item in await late.quiet(0.3) if item.retain}
            assert retained == {topic for topic, (_, retain) in cases.items() if retain} | {
                presence_topic("testnode")
            }

            bus_in = BusClient(edge, subscribe="inbound/")
            try:  # QoS 2 from the broker: exactly once on the bus
                await prove_paths(bus_in, mqtt, into=("inbound/probe", "inbound/probe"))
                exactly_once = message("Q2")
                await mqtt.publish("inbound/q2", exactly_once, qos=2)
                got_in = await bus_in.next()
                assert (got_in.topic, got_in.payload) == ("inbound/q2", exactly_once)
                assert not await bus_in.quiet(0.2)
                assert bridge_of(edge).routes.subscriptions[0].qos == 2
            finally:
                bus_in.close()
        finally:
            bus.close()
            async with MqttClient(mosquitto.port) as cleaner:  # persistence is on: clear
                for topic in ("exact/thing", "agent/status/info"):
                    await cleaner.publish(topic, b"", retain=True)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_both_on_hash_delivers_each_message_exactly_once(
    mosquitto: Mosquitto, protocol: str
) -> None:
    """The loop test: ``#`` both ways, traffic from both sides at once."""
    async with Mqtt311Only(mosquitto.port) as relay:
        port = mosquitto.port if protocol == "5" else relay.port
        config = edge_config(port, bridge={"routes": [{"topic": "#", "direction": "both"}]})
        async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
            bridge = bridge_of(edge)
            await wait_until(lambda: bridge.state == "connected", what="the bridge to connect")
            assert bridge.status().link["version"] == protocol
            bus = BusClient(edge)
            try:
                await mqtt.subscribe("#")
                await prove_paths(
                    bus, mqtt, out=("probe/a", "probe/a"), into=("probe/b", "probe/b")
                )

                count = 20
                sent_bus = [(f"loop/bus/{i}", message("B", i=i)) for i in range(count)]
                sent_mqtt = [(f"loop/mqtt/{i}", message("M", i=i)) for i in range(count)]
                for (topic, payload), (mqtt_topic, mqtt_payload) in zip(
                    sent_bus, sent_mqtt, strict=True
                ):
                    await bus.send(topic, payload)
                    mqtt.publish_nowait(mqtt_topic, mqtt_payload)
                expected = sorted(sent_bus + sent_mqtt)
                on_mqtt = await mqtt.take(2 * count)
                on_bus = await bus.take(2 * count)
                on_mqtt += await mqtt.quiet(0.5)
                on_bus += await bus.quiet(0.1)
                for side in (on_mqtt, on_bus):
                    got = sorted((m.topic, m.payload) for m in matching(side, "loop/#"))
                    assert got == expected
                guard = bridge.status().loop_guard
                assert guard["bus"]["echoes_dropped"] >= count
                if protocol == "3.1.1":
                    assert relay.refused_v5 == 1
                    assert guard["broker"]["echoes_dropped"] >= count
            finally:
                bus.close()


async def test_overlapping_broker_subscriptions_inject_once(mosquitto: Mosquitto) -> None:
    routes = [
        {"topic": "home/+/temp", "direction": "in"},
        {"topic": "home/kitchen/#", "direction": "in"},
        {"topic": "home/kitchen/temp/#", "direction": "in"},  # covered: not subscribed at all
    ]
    config = edge_config(mosquitto.port, bridge={"routes": routes})
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge, subscribe="home/")
        try:
            await prove_paths(bus, mqtt, into=("home/kitchen/probe", "home/kitchen/probe"))
            payload = message("T", celsius=21.5)
            await mqtt.publish("home/kitchen/temp", payload)  # matches both subscriptions
            await mqtt.publish("home/hall/temp", payload)
            got = sorted(item.topic for item in await bus.take(2) + await bus.quiet())
            assert got == ["home/hall/temp", "home/kitchen/temp"]
            assert bridge_of(edge).status().link["overlap_duplicates_skipped"] >= 1
        finally:
            bus.close()


async def test_bad_input_is_dropped_counted_and_logged_once(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="argentic_edge.bridge.service")
    routes = [{"topic": "#", "direction": "both"}]
    config = edge_config(mosquitto.port, bridge={"routes": routes, "max_payload": 200})
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge)
        bridge = bridge_of(edge)
        try:
            await mqtt.subscribe("#")
            await prove_paths(bus, mqtt, out=("probe/a", "probe/a"), into=("probe/b", "probe/b"))
            big = b'{"type":"big","data":"' + b"x" * 300 + b'"}'
            for _ in range(2):  # twice each: counted twice, logged once
                await bus.send("ok/big", big)
                await bus.send_raw(b"no-space-in-this-frame")
                await bus.send_raw(b"bad\xff\xfeutf8 {}")
                await bus.send("agent/+/wild", b"{}")
                await mqtt.publish("ok/big", big)
                await mqtt.publish("has space/x", b"{}")
                await mqtt.publish("empty//level", b"{}")
            good = message("GOOD")
            await bus.send("ok/after", good)
            await mqtt.publish("ok/after-mqtt", good)
            on_mqtt = matching(await mqtt.take(1) + await mqtt.quiet(), "ok/#")
            # both oversize ones are the MQTT client's own: none came through the bridge
            assert sorted((m.topic, m.payload) for m in on_mqtt) == [
                ("ok/after", good),
                ("ok/after-mqtt", good),
                ("ok/big", big),
                ("ok/big", big),
            ]
            on_bus = matching(await bus.quiet(0.3), "ok/#")  # the same, seen from the bus
            assert sorted((m.topic, m.payload) for m in on_bus) == [
                ("ok/after", good),
                ("ok/after-mqtt", good),
                ("ok/big", big),
                ("ok/big", big),
            ]

            status = asdict(bridge.status())
            route = status["routes"][0]
            assert route["out"]["dropped"] == {"too_large": 2, "wildcard_in_topic": 2}
            assert route["in"]["dropped"] == {"too_large": 2, "space_in_topic": 2, "empty_level": 2}
            assert status["unrouted_drops"]["from_bus"] == {"malformed_frame": 2, "invalid_utf8": 2}
            assert status["state"] == "connected"
            dropping = [r.getMessage() for r in caplog.records if "dropping" in r.getMessage()]
            assert len(dropping) == 6, dropping  # one line per kind, not per message
        finally:
            bus.close()


async def test_invalid_utf8_topic_never_gets_past_mosquitto(mosquitto: Mosquitto) -> None:
    """MQTT forbids invalid UTF-8 topics; Mosquitto disconnects a client that sends one, so the
    bridge never sees it (its handler would count it as ``invalid_utf8``)."""
    config = edge_config(mosquitto.port, bridge={"routes": [{"topic": "#", "direction": "in"}]})
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "connected", what="the bridge to connect")
        reader, writer = await asyncio.open_connection("127.0.0.1", mosquitto.port)
        client_id = b"raw"
        variable = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
        writer.write(bytes([0x10, len(variable)]) + variable)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x20\x02\x00\x00"
        topic = b"bad/\xff\xfe"
        body = len(topic).to_bytes(2, "big") + topic + b"{}"
        writer.write(bytes([0x30, len(body)]) + body)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the broker hung up
        writer.close()
        assert bridge.status().routes[0]["in"]["messages"] == 0
        assert bridge.state == "connected"

        # A broker that did not check would hand paho such a message; the bridge counts it.
        lax = paho.MQTTMessage(mid=0, topic=b"bad/\xff\xfe")
        lax.payload = b"{}"
        client = bridge.link.client
        client.on_message(client, None, lax)
        assert bridge.status().unrouted_drops["from_broker"] == {"invalid_utf8": 1}


async def test_presence_online_offline_and_last_will(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Clean stop publishes ``offline``; a crash (SIGKILL) makes the broker publish the will."""
    topic = presence_topic("crashy")
    path = write_yaml(
        tmp_path / "edge.yaml",
        config_document(
            tmp_path / "data",
            node_name="crashy",
            bridge={
                "mqtt": {"broker_address": "127.0.0.1", "port": mosquitto.port, "keepalive": 5}
            },
        ),
    )
    async with MqttClient(mosquitto.port) as watcher:
        await watcher.subscribe(topic)
        with (tmp_path / "edge.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "argentic_edge",
                "run",
                "--config",
                str(path),
                env=environment(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            online = await watcher.next(timeout=15)
            assert (online.topic, online.payload) == (topic, b"online")
            process.send_signal(signal.SIGKILL)
            will = await watcher.next(timeout=10)
            assert (will.topic, will.payload) == (topic, b"offline")
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    config_clean = edge_config(mosquitto.port, node="clean")
    async with MqttClient(mosquitto.port) as watcher:
        await watcher.subscribe(presence_topic("clean"))
        async with Edge(config_clean):
            assert (await watcher.next()).payload == b"online"
        assert (await watcher.next()).payload == b"offline"
    async with MqttClient(mosquitto.port) as late:  # and it stays retained for newcomers
        await late.subscribe(presence_topic("clean"))
        got = await late.next()
        assert (got.payload, got.retain) == (b"offline", True)


async def test_publish_retained_and_on_connect_hook(mosquitto: Mosquitto) -> None:
    config = edge_config(mosquitto.port, bridge={"routes": []})
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bridge = bridge_of(edge)
        await mqtt.subscribe("homeassistant/#")
        calls: list[str] = []

        async def announce() -> None:
            calls.append(bridge.state)
            await bridge.publish_retained("homeassistant/sensor/x/config", b'{"name":"x"}')

        bridge.on_connect(announce)  # already connected: runs now, and after each reconnect
        got = await mqtt.next()
        assert (got.topic, got.payload) == ("homeassistant/sensor/x/config", b'{"name":"x"}')
        assert calls == ["connected"]
        with pytest.raises(Exception, match=r"wildcards|\+ or #"):
            await bridge.publish_retained("bad/+/topic", b"{}")
        await mqtt.publish("homeassistant/sensor/x/config", b"", retain=True)


async def test_no_broker_configured_waits_and_is_healthy() -> None:
    config = edge_config(None)
    async with Edge(config) as edge:
        status = edge.status()["bridge"]
        assert status["state"] == "waiting for broker"
        assert status["detail"] == "waiting for broker (no broker configured)"
        assert edge.health() == (True, [])
        assert bridge_of(edge).health() == (True, "waiting for broker (no broker configured)")


async def test_disabled_bridge_is_not_started() -> None:
    config = edge_config(free_port(), bridge={"enabled": False})
    async with Edge(config) as edge:
        assert "bridge" not in edge.services
        assert edge.status()["bridge"] == {"enabled": False}


async def test_a_multipart_message_is_discarded_whole_counted_and_logged_once(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Argentic writes one frame per message; libzmq filters on the first part only, so a
    continuation part must never pass as a message of its own (here, on another topic)."""
    async with Edge(edge_config(mosquitto.port)) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge)
        try:
            await mqtt.subscribe("agent/#")
            await mqtt.subscribe("tools/#")
            await prove_paths(bus, mqtt, out=("agent/probe", "agent/probe"))
            for _ in range(2):
                await bus.pub.send_multipart(
                    [b"agent/first " + message(), b"tools/smuggled " + message(), b"third"]
                )
            after = message("AFTER")
            await bus.send("agent/after", after)
            got = await mqtt.next()
            assert (got.topic, got.payload) == ("agent/after", after)
            assert not await mqtt.quiet()
            reader = bridge_of(edge).status().bus_reader
            assert reader["multipart"] == 2
        finally:
            bus.close()
    assert (
        sum("multipart" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        == 1
    )
