"""Outbox: bus-to-broker messages waiting for the broker, bounded and in order.

Messages wait here while the broker is away, and while the broker's in-flight window is full.
The bus itself is fire-and-forget (QoS 0), so when the bound is reached the oldest message is
dropped and counted, never the producer blocked: the newest state is the one worth delivering.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from argentic_edge.bridge.routes import Counters


@dataclass(slots=True, eq=False)
class Outgoing:
    """One MQTT publication to make. ``counters`` is the route's (None for the bridge's own
    messages); ``done`` is resolved when the broker has it, for callers that wait."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    counters: Counters | None = None
    done: asyncio.Future[None] | None = field(default=None)
    echo: bool = False  # its echo will come back on our own subscription (MQTT 3.1.1)

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


class Outbox:
    """A FIFO bounded by message count and bytes; appending past a bound drops the oldest."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[Outgoing] = deque()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def append(self, item: Outgoing) -> list[Outgoing]:
        """Queue ``item``; returns what was dropped to make room.

        An item larger than ``max_bytes`` on its own cannot wait here and is the one dropped.
        """
        if item.size > self.max_bytes:
            self.dropped += 1
            return [item]
        dropped = []
        while self._items and (
            len(self._items) >= self.max_messages or self.bytes + item.size > self.max_bytes
        ):
            dropped.append(self.popleft())
        self.dropped += len(dropped)
        self._items.append(item)
        self.bytes += item.size
        return dropped

    def peek(self) -> Outgoing:
        return self._items[0]

    def popleft(self) -> Outgoing:
        item = self._items.popleft()
        self.bytes -= item.size
        return item

    def clear(self) -> list[Outgoing]:
        items = list(self._items)
        self._items.clear()
        self.bytes = 0
        return items

    def stats(self) -> dict[str, int]:
        return {
            "messages": len(self._items),
            "bytes": self.bytes,
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "dropped_oldest": self.dropped,
        }
