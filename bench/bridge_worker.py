"""Benchmark workers for bench/bridge.py, each in its own process (its own GIL):

    python -m bench.bridge_worker mqtt-pub  PORT TOPIC COUNT QOS RATE [SPREAD]
    python -m bench.bridge_worker mqtt-sub  PORT FILTER COUNT QOS
    python -m bench.bridge_worker bus-pub   ENDPOINT TOPIC COUNT RATE [SPREAD]
    python -m bench.bridge_worker bus-sub   ENDPOINT PUBLISH_ENDPOINT PREFIX COUNT

Publishers stamp each payload with time.monotonic_ns() (one clock for every process on Linux);
subscribers print "ready" once they are subscribed, then one JSON line: how many arrived, the
first and last arrival times and, for every message, the one-way latency. RATE 0 means as fast
as possible; otherwise messages are paced at RATE per second. SPREAD n > 0 sends message i to
``TOPIC/<i mod n>`` instead of TOPIC, so a receiver's per-topic caches miss (route scaling).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import zmq

PAD = b"x" * 40
IDLE_TIMEOUT = 3.0  # seconds without a message after which a subscriber reports what it has
PROBE = b"probe"


def payload(seq: int) -> bytes:
    """An Argentic-shaped message of about 100 bytes carrying its send time."""
    return b'{"type":"bench","seq":%d,"t":%d,"data":"%s"}' % (seq, time.monotonic_ns(), PAD)


def sent_at(body: bytes) -> int:
    start = body.index(b'"t":') + 4
    return int(body[start : body.index(b",", start)])


class Counter:
    """Arrivals as a subscriber sees them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self.first = 0
        self.last = 0
        self.latencies_us: list[float] = []

    def __call__(self, body: bytes) -> None:
        now = time.monotonic_ns()
        if not self.received:
            self.first = now
        self.received += 1
        self.last = now
        self.latencies_us.append((now - sent_at(body)) / 1000)

    @property
    def done(self) -> bool:
        return self.received >= self.count

    def report(self) -> None:
        seconds = (self.last - self.first) / 1e9
        print(
            json.dumps(
                {"received": self.received, "seconds": seconds, "latencies_us": self.latencies_us}
            ),
            flush=True,
        )


def topics(topic: str, spread: int) -> Callable[[int], str]:
    """Message i's topic: always ``topic``, or with a spread one of ``spread`` topics below it."""
    if not spread:
        return lambda _index: topic
    return lambda index: f"{topic}/{index % spread}"


def paced(count: int, rate: float, send: Callable[[int], None]) -> float:
    """Call send(i) ``count`` times, at ``rate`` per second (0: flat out); returns seconds."""
    start = time.perf_counter()
    for index in range(count):
        if rate:
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        send(index)
    return time.perf_counter() - start


def mqtt_client() -> paho.Client:
    """paho with its defaults (20 QoS>=1 messages in flight), plus TCP_NODELAY as the bridge
    sets it: without it Nagle's algorithm puts up to 40 ms into the p99 of whichever path has
    a paho publisher, and the comparison would show Nagle, not the bridge."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(20)
    client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    return client


def mqtt_pub(port: int, topic: str, count: int, qos: int, rate: float, spread: int = 0) -> None:
    client = mqtt_client()
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    name = topics(topic, spread)
    seconds = paced(count, rate, lambda i: infos.append(client.publish(name(i), payload(i), qos)))
    infos[-1].wait_for_publish(60)
    print(json.dumps({"sent": count, "seconds": seconds}), flush=True)
    client.disconnect()
    client.loop_stop()


def mqtt_sub(port: int, topic_filter: str, count: int, qos: int) -> None:
    counter = Counter(count)
    client = mqtt_client()
    client.on_message = lambda _c, _u, message: counter(message.payload)
    subscribed = []
    client.on_subscribe = lambda *_: subscribed.append(True)
    client.connect("127.0.0.1", port)
    client.subscribe(topic_filter, qos)
    while not subscribed:
        client.loop(0.1)
    print("ready", flush=True)
    idle_since = time.monotonic()
    while not counter.done and time.monotonic() - idle_since < IDLE_TIMEOUT:
        before = counter.received
        client.loop(0.05)
        if counter.received != before:
            idle_since = time.monotonic()
    counter.report()
    client.disconnect()


def bus_pub(endpoint: str, topic: str, count: int, rate: float, spread: int = 0) -> None:
    """An XPUB publisher (the bus sees a publisher): it waits until the bridge's subscription
    for the topic has arrived, so the first message is not lost to ZeroMQ's slow joiner, and
    blocks instead of dropping when the bus is full (the bridge's rate is what we measure)."""
    context = zmq.Context()
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.XPUB_NODROP, 1)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.connect(endpoint)
    name = topics(topic, spread)
    prefix = name(0).encode()
    while True:
        subscription = socket.recv()
        if subscription[:1] == b"\x01" and prefix.startswith(subscription[1:]):
            break
    seconds = paced(count, rate, lambda i: socket.send(name(i).encode() + b" " + payload(i)))
    print(json.dumps({"sent": count, "seconds": seconds}), flush=True)
    socket.close(linger=5000)
    context.term()


def bus_sub(endpoint: str, publish_endpoint: str, prefix: str, count: int) -> None:
    """A SUB on the bus, ready once a probe of its own made the round trip through the proxy."""
    counter = Counter(count)
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 1_000_000)
    socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    socket.connect(endpoint)
    probe = context.socket(zmq.PUB)
    probe.connect(publish_endpoint)
    probe_frame = prefix.encode() + PROBE + b" {}"
    while True:
        probe.send(probe_frame)
        if socket.poll(50) and socket.recv() == probe_frame:
            break
    probe.close(linger=0)
    while socket.poll(100):  # probes still on their way
        socket.recv()
    print("ready", flush=True)
    while not counter.done and socket.poll(int(IDLE_TIMEOUT * 1000)):
        frame = socket.recv()
        counter(frame.partition(b" ")[2])
    counter.report()
    socket.close(linger=0)
    context.term()


def main(argv: list[str]) -> None:
    role, *args = argv
    if role == "mqtt-pub":
        mqtt_pub(
            int(args[0]), args[1], int(args[2]), int(args[3]), float(args[4]), *map(int, args[5:6])
        )
    elif role == "mqtt-sub":
        mqtt_sub(int(args[0]), args[1], int(args[2]), int(args[3]))
    elif role == "bus-pub":
        bus_pub(args[0], args[1], int(args[2]), float(args[3]), *map(int, args[4:5]))
    elif role == "bus-sub":
        bus_sub(args[0], args[1], args[2], int(args[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
