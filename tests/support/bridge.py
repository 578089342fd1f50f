"""Helpers for the bridge tests: an appliance config, real MQTT and bus clients, path probes,
and a TCP relay that makes Mosquitto look like an MQTT 3.1.1-only broker.

The clients are what users run: paho-mqtt on the broker side (in its own network thread, as
mosquitto_sub would be), plain pyzmq sockets speaking Argentic's ``<topic> <json>`` frames on
the bus side. Their messages reach the test's event loop through asyncio queues, so a test
awaits messages instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as paho
import zmq
import zmq.asyncio

from argentic_edge.app import Edge
from argentic_edge.config import EdgeConfig, parse_config
from argentic_edge.topics import TopicFilter
from tests.support.config import bus_section, config_document, fresh_data_dir

PROBE = b'{"type":"probe"'  # payloads starting so are path probes, skipped by every collector


def edge_config(
    broker_port: int | None,
    *,
    bridge: dict[str, Any] | None = None,
    mqtt: dict[str, Any] | None = None,
    node: str = "testnode",
    messaging: dict[str, Any] | None = None,
) -> EdgeConfig:
    """An appliance on free ports with only the bus and the bridge (no Home Assistant
    announcements on the broker); back-off in tenths of s. ``bridge``, ``mqtt`` and
    ``messaging`` add keys to their sections."""
    mqtt_section: dict[str, Any] = {"connect_retry_delay": 0.1, "keepalive": 10}
    if broker_port is not None:
        mqtt_section.update(broker_address="127.0.0.1", port=broker_port)
    mqtt_section.update(mqtt or {})
    bridge_section: dict[str, Any] = {"mqtt": mqtt_section, "ha_discovery": False}
    bridge_section.update(bridge or {})
    return parse_config(
        config_document(
            fresh_data_dir(),
            node_name=node,
            messaging=bus_section(**(messaging or {})),
            bridge=bridge_section,
        ),
        env={},
    )


def message(kind: str = "test", **fields: Any) -> bytes:
    """An Argentic message as agents send it (the bridge must not touch a byte of it)."""
    body = {
        "type": kind,
        "source": "test",
        "timestamp": time.time(),
        "message_id": str(uuid.uuid4()),
        **fields,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll a state the code under test exposes only as a value (its status document)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    @property
    def is_probe(self) -> bool:
        return self.payload.startswith(PROBE)


class Collector:
    """What a test client received. Probes are told apart from test messages: a probe wait
    keeps the test messages it passes for ``next``, and ``next`` skips probes."""

    def __init__(self) -> None:
        self.pending: deque[Received] = deque()

    async def receive(self, timeout: float) -> Received:
        raise NotImplementedError

    async def next(self, timeout: float = 5.0) -> Received:
        while self.pending:
            return self.pending.popleft()
        while True:
            item = await self.receive(timeout)
            if not item.is_probe:
                return item

    async def take(self, count: int, timeout: float = 5.0) -> list[Received]:
        return [await self.next(timeout) for _ in range(count)]

    async def quiet(self, period: float = 0.3) -> list[Received]:
        """Whatever else arrives within ``period``: proves nothing more (a duplicate) came."""
        extra = list(self.pending)
        self.pending.clear()
        try:
            while True:
                extra.append(await self.next(period))
        except TimeoutError:
            return extra

    async def probe_arrived(self, topic: str) -> None:
        while True:
            item = await self.receive(60)
            if item.is_probe and item.topic == topic:
                return
            if not item.is_probe:
                self.pending.append(item)

    async def drain_probes(self, period: float = 0.1) -> None:
        """Let probes still on their way arrive and go; test messages stay for ``next``."""
        try:
            while True:
                item = await self.receive(period)
                if not item.is_probe:
                    self.pending.append(item)
        except TimeoutError:
            return


class MqttClient(Collector):
    """A paho client in its own thread; received messages land in an asyncio queue."""

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "",
        clean: bool = True,
        protocol: int = paho.MQTTv311,
        auto_reconnect: bool = False,
    ) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.port = port
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=clean if protocol != paho.MQTTv5 else None,
            reconnect_on_failure=auto_reconnect,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_message = self._on_message
        self.connected = asyncio.Event()
        self.client.on_connect = lambda *_: self.loop.call_soon_threadsafe(self.connected.set)
        self.client.on_disconnect = lambda *_: self.loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        item = Received(msg.topic, msg.payload, msg.qos, bool(msg.retain))
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    async def __aenter__(self) -> Self:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        await asyncio.wait_for(self.connected.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def receive(self, timeout: float) -> Received:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        done = asyncio.Event()
        self.client.on_subscribe = lambda *_: self.loop.call_soon_threadsafe(done.set)
        self.client.subscribe(topic_filter, qos)
        await asyncio.wait_for(done.wait(), 5)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, 5)

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 1) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos)


class BusClient(Collector):
    """An agent on the bus: a plain PUB to the frontend, a SUB on the backend, of an appliance
    in this process (``edge``) or another one (its ``(publish, subscribe)`` endpoints)."""

    def __init__(
        self,
        edge: Edge | tuple[str, str],
        subscribe: str = "",
        high_water_mark: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(edge, Edge):
            endpoints = edge.services["bus"].bus.endpoints  # type: ignore[attr-defined]
            edge = (endpoints.publish, endpoints.subscribe)
        publish, subscribe_at = edge
        self.context = zmq.asyncio.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.sub = self.context.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.setsockopt(zmq.LINGER, 0)
            if high_water_mark is not None:  # a burst without drops at the client's side
                sock.setsockopt(zmq.SNDHWM if sock is self.pub else zmq.RCVHWM, high_water_mark)
        self.pub.connect(publish)
        self.sub.setsockopt(zmq.SUBSCRIBE, subscribe.encode())
        self.sub.connect(subscribe_at)

    def close(self) -> None:
        self.pub.close()
        self.sub.close()
        self.context.term()

    async def send(self, topic: str, payload: bytes) -> None:
        await self.pub.send(topic.encode() + b" " + payload)

    async def send_raw(self, frame: bytes) -> None:
        await self.pub.send(frame)

    async def receive(self, timeout: float) -> Received:
        frame = await asyncio.wait_for(self.sub.recv(), timeout)
        topic, _, payload = frame.partition(b" ")
        return Received(topic.decode(errors="replace"), payload)


async def _probe(
    send: Callable[[], Any], arrived: Awaitable[None], what: str, timeout: float = 5.0
) -> None:
    """Send probes until one comes through: ZeroMQ drops what a PUB sends before the
    subscriptions reach it, so each path is proven live before a test relies on it."""
    waiting = asyncio.ensure_future(arrived)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await send()
            done, _ = await asyncio.wait({waiting}, timeout=0.05)
            if done:
                return waiting.result()
        raise AssertionError(f"{what} did not come up within {timeout}s")
    finally:
        waiting.cancel()


async def prove_paths(
    bus: BusClient,
    mqtt: MqttClient,
    *,
    out: tuple[str, str] | None = None,
    into: tuple[str, str] | None = None,
) -> None:
    """Prove bus -> broker (``out`` = (bus topic, broker topic)) and broker -> bus (``into`` =
    (broker topic, bus topic)) work, then let stray probes pass. ``mqtt`` must already be
    subscribed to the broker topic of ``out``, ``bus`` to the bus topic of ``into``."""
    if out is not None:
        local, remote = out

        async def send_out() -> None:
            await bus.send(local, PROBE + b"}")

        await _probe(send_out, mqtt.probe_arrived(remote), f"the path bus {local} -> {remote}")
    if into is not None:
        remote_in, local_in = into

        async def send_in() -> None:
            mqtt.publish_nowait(remote_in, PROBE + b"}", qos=0)

        await _probe(
            send_in, bus.probe_arrived(local_in), f"the path broker {remote_in} -> bus {local_in}"
        )
    for client in (mqtt, bus):
        await client.drain_probes()


def bridge_of(edge: Edge) -> Any:
    return edge.services["uplink:mqtt"]


def matching(items: list[Received], pattern: str) -> list[Received]:
    topic_filter = TopicFilter(pattern)
    return [item for item in items if topic_filter.matches(item.topic)]


class _Relay:
    """A TCP relay in front of a real broker: each connection's CONNECT is read and shown to
    ``_answer`` (which may answer it itself); everything else passes byte for byte."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readexactly(1)
            length, raw_length = await _read_varint(reader)
            body = await reader.readexactly(length)
            if await self._answer(body, writer):
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
            up_writer.write(head + raw_length + body)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """True if the relay answered this CONNECT itself (then nothing reaches the broker)."""
        return False


class Mqtt311Only(_Relay):
    """Answers an MQTT 5 CONNECT the way an MQTT 3.1.1 broker must (CONNACK 0x01
    "unacceptable protocol version", then close) and relays every 3.1.1 connection. With it, a
    real Mosquitto stands in for an older broker, so the bridge's fallback and its 3.1.1 loop
    guard run against real traffic."""

    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self.refused_v5 = 0

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> bool:
        (name_length,) = struct.unpack("!H", body[:2])
        if body[2 + name_length] != 5:
            return False
        self.refused_v5 += 1
        writer.write(b"\x20\x02\x00\x01")
        await writer.drain()
        return True


class SaysSessionTakenOver(_Relay):
    """Does what MQTT 5 asks of a broker when a client connects with a client id already
    connected, and Mosquitto 2.0.11 skips: it sends the older connection a DISCONNECT with
    reason 0x8E ("session taken over") before closing it. The broker behind is real."""

    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self._live: dict[bytes, asyncio.StreamWriter] = {}
        self.taken_over = 0

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> bool:
        client_id = _connect_client_id(body)
        older = self._live.get(client_id)
        if older is not None and not older.is_closing():
            self.taken_over += 1
            older.write(b"\xe0\x02\x8e\x00")  # DISCONNECT, reason 0x8E, no properties
            older.close()
        self._live[client_id] = writer
        return False


def _connect_client_id(body: bytes) -> bytes:
    """The client id of an MQTT 5 CONNECT's variable header + payload (``body``)."""
    (name_length,) = struct.unpack("!H", body[:2])
    at = 2 + name_length + 4  # protocol name, level, flags, keepalive
    properties, shift = 0, 0
    while True:
        byte = body[at]
        at += 1
        properties |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    at += properties
    (id_length,) = struct.unpack("!H", body[at : at + 2])
    return body[at + 2 : at + 2 + id_length]


async def _read_varint(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    value, shift, raw = 0, 0, b""
    while True:
        byte = await reader.readexactly(1)
        raw += byte
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value, raw
        shift += 7


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
