"""Bus clients for people and scripts: mosquitto_pub and mosquitto_sub for the ZeroMQ bus.

A plain PUB socket drops what it sends before the proxy's subscriptions reach it (ZeroMQ's
"slow joiner"), which makes a one-shot publish from the command line unreliable. The publisher
here is an XPUB socket instead: on the wire it is a publisher like any other, but it sees the
subscriptions arrive and sends once a matching one is there (or once it has waited long enough).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
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


class Publisher:
    """An XPUB on the bus that knows which topic prefixes the bus's subscribers asked for.

    The proxy forwards every subscription to each publisher that connects (and later ones as
    they come and go), so ``reaches(topic)`` is what the bus itself knows: whether any subscriber
    holds a prefix of the topic. A prefix is what libzmq filters on; a subscriber whose MQTT-style
    filter is narrower (``agent/+/status`` subscribes ``agent/``) may still drop the message.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        *,
        connect_timeout: float = 5.0,
        encoding: str = "utf-8",
    ) -> None:
        self.encoding = encoding
        self.socket = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 2000)
        self._prefixes: dict[bytes, int] = {}
        try:
            connect_and_wait(self.socket, endpoint, connect_timeout)
        except BaseException:
            self.socket.close(linger=0)
            raise

    def wait_for(self, topic: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a subscription covering ``topic``."""
        deadline = time.monotonic() + timeout
        while not self.reaches(topic) and (remaining := deadline - time.monotonic()) > 0:
            if self.socket.poll(int(remaining * 1000) + 1):
                self._take_subscriptions()
        return self.reaches(topic)

    def reaches(self, topic: str) -> bool:
        """Whether a subscriber on the bus holds a prefix of ``topic`` (as far as we heard)."""
        self._take_subscriptions()
        name = topic.encode(self.encoding)
        return any(name.startswith(prefix) for prefix in self._prefixes)

    def send(self, topic: str, payload: bytes) -> bool:
        """Send one message in Argentic's frame format; True if a subscriber's prefix covers it."""
        validate_topic_name(topic)
        frame = encode_frame(topic, payload, self.encoding)
        reached = self.reaches(topic)
        self.socket.send(frame)
        return reached

    def _take_subscriptions(self) -> None:
        """XPUB hands us ``\\x01prefix`` (subscribe) and ``\\x00prefix`` (unsubscribe)."""
        while self.socket.poll(0):
            message = self.socket.recv()
            kind, prefix = message[:1], message[1:]
            if kind == b"\x01":
                self._prefixes[prefix] = self._prefixes.get(prefix, 0) + 1
            elif kind == b"\x00" and prefix in self._prefixes:
                self._prefixes[prefix] -= 1
                if not self._prefixes[prefix]:
                    del self._prefixes[prefix]

    def close(self) -> None:
        self.socket.close()


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
    publisher = Publisher(context, endpoint, connect_timeout=connect_timeout, encoding=encoding)
    try:
        publisher.wait_for(topic, wait)
        return publisher.send(topic, payload)
    finally:
        publisher.close()


@dataclass(frozen=True)
class BusMessage:
    topic: str
    payload: bytes


class Subscriber:
    """MQTT-style filters on the bus: libzmq filters the literal prefixes, Python the rest."""

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        topic_filter: TopicFilter | Sequence[TopicFilter],
        *,
        encoding: str = "utf-8",
        high_water_mark: int = 100_000,
        connect_timeout: float = 5.0,
    ) -> None:
        self.filters = (
            (topic_filter,) if isinstance(topic_filter, TopicFilter) else tuple(topic_filter)
        )
        self.encoding = encoding
        self.malformed = 0
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, high_water_mark)
        for prefix in dict.fromkeys(f.zmq_prefix for f in self.filters):
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode(encoding))
        connect_and_wait(self.socket, endpoint, connect_timeout)

    def messages(
        self, timeout: float | None = None, deadline: float | None = None
    ) -> Iterator[BusMessage]:
        """Matching messages as they come; stops after ``timeout`` seconds of silence, or at
        ``deadline`` (a ``time.monotonic()`` instant)."""
        while True:
            wait = timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            if not self.socket.poll(None if wait is None else int(wait * 1000)):
                return
            frame = self.socket.recv()
            try:
                topic, payload = decode_frame(frame, self.encoding)
            except FrameError as exc:
                self.malformed += 1
                if self.malformed == 1:
                    log.warning("ignoring malformed bus frames (%s); counting them", exc)
                continue
            if any(f.matches(topic) for f in self.filters):
                yield BusMessage(topic, payload)

    def close(self) -> None:
        self.socket.close()
