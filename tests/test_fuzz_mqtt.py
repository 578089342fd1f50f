"""Hostile MQTT traffic through a real Mosquitto bridged to the appliance on ``#`` both ways.

Hypothesis makes the topics and payloads: MQTT's 65535-byte topic limit, invalid UTF-8, NUL,
control characters, ``$SYS``-like topics, empty levels, spaces, payloads at and over
``bridge.max_payload``. From the broker side a hand-built MQTT 3.1.1 client sends them, so any
bytes can be put in a topic; from the bus side a plain PUB sends any frame. After each message a
marker follows on the same connection (QoS 1, so it stays in order) and the test waits for the
marker on the far side: by then the fuzzed message has either crossed, byte for byte, or been
dropped and counted under the reason the test expects. The bridge must stay connected throughout
(one connection, no reconnect).

Hypothesis runs in a worker thread and hands each example to the event loop that runs the
appliance, because the appliance and the clients live on that loop.
"""

from __future__ import annotations

import asyncio
import itertools
import string
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argentic_edge.app import Edge
from argentic_edge.bridge.service import presence_topic
from argentic_edge.config import ConfigError, parse_config
from tests.support.bridge import (
    BusClient,
    MqttClient,
    Received,
    bridge_of,
    edge_config,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto

MAX_PAYLOAD = 512
MQTT_TOPIC_LIMIT = 65535
EXAMPLES = 100
MARKER_IN = "fuzzmark/in"
MARKER_OUT = "fuzzmark/out"
PRESENCE = presence_topic("testnode")
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- a hand-built MQTT 3.1.1 publisher ------------------------------------------------------


def _remaining_length(size: int) -> bytes:
    out = b""
    while True:
        byte, size = size % 128, size // 128
        out += bytes([byte | (0x80 if size else 0)])
        if not size:
            return out


class RawPublisher:
    """Publishes QoS 1 PUBLISH packets with any topic bytes. paho refuses (rightly) to encode
    some of them; a hostile device on the LAN is not so polite. A broker that hangs up on a
    packet is noted and the next publish reconnects."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ids = itertools.count(1)
        self.refused = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            client_id = f"fuzz-{self.refused}".encode()
            variable = (
                b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
            )
            writer.write(b"\x10" + _remaining_length(len(variable)) + variable)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x20\x02\x00\x00"
            self.reader, self.writer = reader, writer
        return self.reader, self.writer

    async def publish(self, topic: bytes, payload: bytes) -> bool:
        """True when the broker acknowledged the message, False when it hung up on it."""
        reader, writer = await self._connect()
        packet_id = next(self.ids) % 65535 + 1
        body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
        writer.write(b"\x32" + _remaining_length(len(body)) + body)
        try:
            answer = await asyncio.wait_for(reader.readexactly(4), 5)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            self.reader = self.writer = None
            self.refused += 1
            return False
        assert answer == b"\x40\x02" + packet_id.to_bytes(2, "big"), answer
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- what may be sent --------------------------------------------------------------------------

MILD = st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=8)
SPICY = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(string.ascii_letters + "$+#/ ")),
        st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\x9f", "\ufdd0", "\uffff", "\U0010fffe"]),
        st.characters(codec="utf-8"),
    ),
    max_size=12,
)
LEVEL_TEXT = st.one_of(MILD, MILD, MILD, SPICY)  # mostly plausible, so enough cross over
LEVEL = st.one_of(
    LEVEL_TEXT.map(str.encode),
    LEVEL_TEXT.map(str.encode),
    st.binary(max_size=6),  # often not UTF-8
    st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf"]),
)
PLAIN_TOPIC = st.lists(LEVEL, min_size=1, max_size=5).map(b"/".join)
DOLLAR_TOPIC = st.tuples(
    st.sampled_from([b"$SYS/", b"$share/g/", b"$ctl/"]),
    st.lists(LEVEL_TEXT.map(str.encode), min_size=1, max_size=3),
).map(lambda parts: parts[0] + b"/".join(parts[1]))


def _long_topic(size: int) -> bytes:
    return b"fuzz/long/" + b"x" * (size - len(b"fuzz/long/"))


PAYLOAD = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([MAX_PAYLOAD, MAX_PAYLOAD + 1]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
)


# --- the oracle: what the bridge must do with each ------------------------------------------


def _decoded(topic: bytes) -> str | None:
    try:
        return topic.decode("utf-8")
    except UnicodeDecodeError:
        return None


def expected_inbound(topic: bytes, payload: bytes) -> tuple[str, str | None]:
    """For a message the broker accepted: ("bus", None), ("ignored", None) when no ``#``
    subscription sees it, or (counter side, reason)."""
    if topic.startswith(b"$"):
        return "ignored", None  # '#' never matches topics beginning with '$' (MQTT 4.7.2)
    text = _decoded(topic)
    if text is None:
        return "unrouted", "invalid_utf8"
    if " " in text:
        return "route", "space_in_topic"
    if "" in text.split("/"):
        return "route", "empty_level"
    if len(payload) > MAX_PAYLOAD:
        return "route", "too_large"
    return "bus", None


def _forbidden_in_mqtt(text: str) -> bool:
    """MQTT section 1.5.3: control characters and Unicode non-characters."""
    return any(
        ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or 0xFDD0 <= ord(c) <= 0xFDEF
        or ord(c) & 0xFFFE == 0xFFFE
        for c in text
    )


def expected_outbound(frame: bytes) -> tuple[str, str | None]:
    """("broker", None) when our client sees it, ("hidden", None) when it is published under
    a '$' topic our client has no subscription for, or (counter side, reason)."""
    topic, space, payload = frame.partition(b" ")
    if not space or not topic:
        return "unrouted", "malformed_frame"
    text = _decoded(topic)
    if text is None:
        return "unrouted", "invalid_utf8"
    if "+" in text or "#" in text:
        return "route", "wildcard_in_topic"
    if "\x00" in text:
        return "route", "nul_in_topic"
    if _forbidden_in_mqtt(text):
        return "route", "forbidden_character"
    if len(topic) > MQTT_TOPIC_LIMIT:
        return "route", "topic_too_long"
    if len(payload) > MAX_PAYLOAD:
        return "route", "too_large"
    if text.startswith(("$SYS", "$share")):
        return "route", "broker_refused"  # Mosquitto: not authorised (PUBACK 0x87, MQTT 5)
    if text.startswith("$") and not text.startswith("$ctl/"):
        return "hidden", None  # published, but '#' does not show '$' topics (MQTT 4.7.2)
    return "broker", None


# --- the rig -------------------------------------------------------------------------------


@dataclass
class Rig:
    edge: Edge
    bus: BusClient
    mqtt: MqttClient
    raw: RawPublisher
    loop: asyncio.AbstractEventLoop
    markers: itertools.count[int]

    @property
    def status(self) -> dict[str, Any]:
        return asdict(bridge_of(self.edge).status())

    def drops(self, direction: str) -> tuple[Counter[str], Counter[str]]:
        """The route's drops (plus how many it carried, as "carried") and the unrouted ones."""
        status = self.status
        side = "from_broker" if direction == "in" else "from_bus"
        route = status["routes"][0][direction]
        return (
            Counter(route["dropped"], carried=route["messages"]),
            Counter(status["unrouted_drops"][side]),
        )

    def run(self, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """From hypothesis' thread: run one example on the appliance's loop."""
        asyncio.run_coroutine_threadsafe(coroutine(), self.loop).result(60)

    def assert_connected(self) -> None:
        status = self.status
        assert (status["state"], status["connections"]) == ("connected", 1), status


async def _until_marker(collector: BusClient | MqttClient, marker: str) -> list[Received]:
    """Everything that arrives before ``marker``, but the bridge's retained presence (which
    a ``#`` subscription gets first)."""
    seen = []
    while (item := await collector.next(10)).topic != marker:
        if item.topic != PRESENCE:
            seen.append(item)
    return seen


@asynccontextmanager
async def rig(mosquitto: Mosquitto) -> AsyncIterator[Rig]:
    routes = [{"topic": "#", "direction": "both", "qos": 1}]
    config = edge_config(mosquitto.port, bridge={"routes": routes, "max_payload": MAX_PAYLOAD})
    async with Edge(config) as edge, MqttClient(mosquitto.port) as mqtt:
        bus = BusClient(edge)
        raw = RawPublisher(mosquitto.port)
        try:
            await mqtt.subscribe("#")
            await mqtt.subscribe("$ctl/#")
            await prove_paths(bus, mqtt, out=("probe/a", "probe/a"), into=("probe/b", "probe/b"))
            yield Rig(edge, bus, mqtt, raw, asyncio.get_running_loop(), itertools.count())
        finally:
            raw.close()
            bus.close()


# --- the tests -------------------------------------------------------------------------------


async def test_hostile_broker_messages_are_dropped_counted_or_passed_byte_for_byte(
    mosquitto: Mosquitto,
) -> None:
    tried: Counter[str] = Counter()
    async with rig(mosquitto) as r:

        async def one(topic: bytes, payload: bytes) -> None:
            before = r.drops("in")
            accepted = await r.raw.publish(topic, payload)
            marker = f"{MARKER_IN}/{next(r.markers)}"
            assert await r.raw.publish(marker.encode(), b"{}")
            seen = await _until_marker(r.bus, marker)
            outcome = expected_inbound(topic, payload) if accepted else ("refused", None)
            tried[outcome[1] or outcome[0]] += 1
            route, unrouted = before
            route["carried"] += 1  # the marker
            if outcome[0] == "route":
                route[outcome[1]] += 1
            elif outcome[0] == "unrouted":
                unrouted[outcome[1]] += 1
            elif outcome[0] == "bus":
                route["carried"] += 1
            expected = [(topic.decode(), payload)] if outcome[0] == "bus" else []
            assert [(item.topic, item.payload) for item in seen] == expected, outcome
            assert r.drops("in") == (route, unrouted), outcome

        @SETTINGS
        @given(
            st.one_of(
                PLAIN_TOPIC,
                PLAIN_TOPIC,
                PLAIN_TOPIC,
                DOLLAR_TOPIC,
                st.sampled_from([MQTT_TOPIC_LIMIT, MQTT_TOPIC_LIMIT - 1]).map(_long_topic),
            ),
            PAYLOAD,
        )
        def fuzz(topic: bytes, payload: bytes) -> None:
            r.run(lambda: one(topic, payload))

        await asyncio.to_thread(fuzz)
        r.assert_connected()
    assert tried["bus"] > 0 and tried["refused"] > 0, tried


async def test_hostile_bus_frames_are_dropped_counted_or_published_byte_for_byte(
    mosquitto: Mosquitto,
) -> None:
    tried: Counter[str] = Counter()
    async with rig(mosquitto) as r:

        async def one(frame: bytes) -> None:
            before = r.drops("out")
            outcome = expected_outbound(frame)
            tried[outcome[1] or outcome[0]] += 1
            await r.bus.send_raw(frame)
            marker = f"{MARKER_OUT}/{next(r.markers)}"
            await r.bus.send(marker, b"{}")
            seen = await _until_marker(r.mqtt, marker)
            route, unrouted = before
            route["carried"] += 1  # the marker
            if outcome[0] == "route":
                route[outcome[1]] += 1
                # the broker refuses what it was sent: sent, then counted as dropped
                route["carried"] += outcome[1] == "broker_refused"
            elif outcome[0] == "unrouted":
                unrouted[outcome[1]] += 1
            else:
                route["carried"] += 1
            topic, _, payload = frame.partition(b" ")
            expected = [(topic.decode(), payload)] if outcome[0] == "broker" else []
            assert [(item.topic, item.payload) for item in seen] == expected, outcome
            # A refusal is the broker's acknowledgement, which may trail the marker a little.
            await wait_until(lambda: r.drops("out") == (route, unrouted), what=str(outcome))

        @SETTINGS
        @given(
            st.one_of(
                st.tuples(st.one_of(PLAIN_TOPIC, DOLLAR_TOPIC), PAYLOAD).map(b" ".join),
                st.sampled_from([MQTT_TOPIC_LIMIT, MQTT_TOPIC_LIMIT + 1]).map(
                    lambda size: _long_topic(size) + b" {}"
                ),
                st.binary(max_size=40),
            )
        )
        def fuzz(frame: bytes) -> None:
            r.run(lambda: one(frame))

        await asyncio.to_thread(fuzz)
        r.assert_connected()
    assert tried["broker"] > 0 and sum(tried.values()) > tried["broker"], tried


@pytest.mark.parametrize(
    "topic", ["agent/\x01bell", "agent/del\x7f", "agent/\ufffe", "agent/\U0001ffff"]
)
async def test_a_bus_topic_mosquitto_calls_malformed_does_not_knock_the_bridge_off(
    mosquitto: Mosquitto, topic: str
) -> None:
    """Mosquitto disconnects a client whose topic has a control character or a non-character.
    Before the bridge checked for them, one such bus message kept it reconnecting forever: the
    unacknowledged QoS 1 message was sent again after every reconnect."""
    async with rig(mosquitto) as r:
        await r.bus.send(topic, b"{}")
        await r.bus.send("agent/after", b"{}")
        assert [
            (item.topic, item.payload) for item in await _until_marker(r.mqtt, "agent/after")
        ] == []
        assert r.drops("out")[0]["forbidden_character"] == 1
        r.assert_connected()


def test_a_route_a_broker_would_call_malformed_is_a_configuration_error() -> None:
    """The same characters in a route would make the bridge's SUBSCRIBE malformed."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "bridge": {
                    "routes": [{"topic": "agent/#"}, {"topic": "x/#", "remote_prefix": "site\x07/"}]
                }
            },
            env={},
        )
    assert [(p.path, p.value) for p in caught.value.problems] == [
        ("bridge.routes[1].topic", "site\x07/x/#")
    ]
