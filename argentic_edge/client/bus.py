"""Bus clients for people and scripts: mosquitto_pub and mosquitto_sub for the ZeroMQ bus.

A plain PUB socket drops what it sends before the proxy's subscriptions reach it (ZeroMQ's
"slow joiner"), which makes a one-shot publish from the command line unreliable. The publisher
here is an XPUB socket instead: on the wire it is a publisher like any other, but it sees the
subscriptions arrive and sends once a matching one is there (or once it has waited long enough).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from argentic_edge.errors import EdgeError
from argentic_edge.topics import (
    FrameError,
    TopicFilter,
    decode_frame,
    encode_frame,
    validate_topic_name,
)

log = logging.getLogger(__name__)


class BusUnreachable(EdgeError):
    """No proxy accepted our connection in time."""


def connect_and_wait(socket: zmq.Socket[Any], endpoint: str, timeout: float) -> None:
    """Connect and block until the ZMTP handshake is done, or raise BusUnreachable.

    The monitor is attached before connecting, so a handshake faster than us is not missed.
    """
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        socket.connect(endpoint)
        if not monitor.poll(int(timeout * 1000)):
            raise BusUnreachable(f"no bus answers at {endpoint} (waited {timeout:g}s)")
        recv_monitor_message(monitor)
    finally:
        socket.disable_monitor()
        monitor.close(linger=0)


def publish(
    context: zmq.Context[Any],
    endpoint: str,
    topic: str,
    payload: bytes,
    *,
    wait: float = 1.0,
    connect_timeout: float = 5.0,
    encoding: str = "utf-8",
) -> bool:
    """Send one message in Argentic's frame format. True if a matching subscriber was seen.

    Waits up to ``wait`` seconds for a subscription that covers the topic; publishing to a bus
    where nobody listens is not an error (as with mosquitto_pub), it just reaches no one.
    """
    validate_topic_name(topic)
    frame = encode_frame(topic, payload, encoding)
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 2000)
    try:
        connect_and_wait(socket, endpoint, connect_timeout)
        seen = False
        deadline = time.monotonic() + wait
        while not seen and (remaining := deadline - time.monotonic()) > 0:
            if socket.poll(int(remaining * 1000) + 1):
                message = socket.recv()
                seen = message[:1] == b"\x01" and frame.startswith(message[1:])
        socket.send(frame)
        return seen
    finally:
        socket.close()


@dataclass(frozen=True)
class BusMessage:
    topic: str
    payload: bytes


class Subscriber:
    """An MQTT-style filter on the bus: libzmq filters the literal prefix, Python the rest."""

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        topic_filter: TopicFilter,
        *,
        encoding: str = "utf-8",
        high_water_mark: int = 100_000,
        connect_timeout: float = 5.0,
    ) -> None:
        self.filter = topic_filter
        self.encoding = encoding
        self.malformed = 0
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, high_water_mark)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic_filter.zmq_prefix.encode(encoding))
        connect_and_wait(self.socket, endpoint, connect_timeout)

    def messages(self, timeout: float | None = None) -> Iterator[BusMessage]:
        """Matching messages as they come; stops after ``timeout`` seconds of silence."""
        while True:
            if not self.socket.poll(None if timeout is None else int(timeout * 1000)):
                return
            frame = self.socket.recv()
            try:
                topic, payload = decode_frame(frame, self.encoding)
            except FrameError as exc:
                self.malformed += 1
                if self.malformed == 1:
                    log.warning("ignoring malformed bus frames (%s); counting them", exc)
                continue
            if self.filter.matches(topic):
                yield BusMessage(topic, payload)

    def close(self) -> None:
        self.socket.close()
