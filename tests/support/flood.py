"""A flood on the bus: a real PUB socket in a process of its own, bounded in count.

Tests stop it as soon as what they wait for happened; a flood that ran to its limit means it
never happened while the bus was flooded.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from multiprocessing.synchronize import Event as EventType
from typing import Any

import zmq

FLOOD_LIMIT = 20_000_000  # frames; at ~1.5 M/s the flood stops on its own after 10-20 s
CHUNK = 5_000


def frame(topic: str) -> bytes:
    return topic.encode() + b" " + json.dumps({"type": "INFO", "source": "x"}).encode()


def _flood(endpoint: str, topic: str, limit: int, stop: EventType, sent: Any) -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoint)
    data = frame(topic)
    try:
        while sent.value < limit and not stop.is_set():
            for _ in range(CHUNK):
                pub.send(data)
            sent.value += CHUNK
    finally:
        pub.close()
        context.term()


class Flood:
    """A real PUB socket in its own process (the appliance's GIL is not its GIL) publishing
    ``topic`` until ``stop()`` or ``limit`` frames."""

    def __init__(self, endpoint: str, topic: str, limit: int = FLOOD_LIMIT) -> None:
        self.limit = limit
        self._stop = multiprocessing.Event()
        self._sent = multiprocessing.Value("q", 0)
        self._process = multiprocessing.Process(
            target=_flood, args=(endpoint, topic, limit, self._stop, self._sent), daemon=True
        )

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    @property
    def running(self) -> bool:
        return self._process.is_alive()

    def start(self) -> Flood:
        self._process.start()
        while self.sent == 0 and self.running:
            time.sleep(0.001)
        return self

    def stop(self) -> int:
        """Frames sent; ``limit`` means nobody stopped it: what it waited for never happened."""
        self._stop.set()
        self._process.join(timeout=60)
        return self.sent


def publish_some(endpoint: str, topic: str, count: int = CHUNK) -> None:
    Flood(endpoint, topic, count).start().stop()
