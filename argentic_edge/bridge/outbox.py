"""Outbox: bus-to-broker messages waiting for the broker, bounded and in order.

Messages wait here while the broker is away, and while the broker's in-flight window is full.
The bus itself is fire-and-forget (QoS 0), so when a bound (messages, bytes, age) is reached the
oldest message is dropped and counted, never the producer blocked: the newest state is the one
worth delivering.

This is the memory outbox; ``bridge/durable.py`` keeps the same interface on disk. ``popleft``
hands a message to the link, ``done`` says the link settled it, ``requeue`` gives back what a
lost connection left in flight, to the front and in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    # Wall clock, so that it means the same after a restart (a durable outbox keeps it):
    # max_age and oldest_age are measured from it.
    created: float = field(default_factory=time.time)
    # Which route it came through, so a durable outbox can give its counters back after a
    # restart (None for the bridge's own messages).
    route_key: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


class Outbox:
    """A FIFO bounded by message count, bytes and age; appending past a bound drops the oldest.

    ``max_age`` in seconds, measured from each item's ``created``.
    """

    durable = False

    def __init__(self, max_messages: int, max_bytes: int, max_age: float = 86_400.0) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._items: deque[Outgoing] = deque()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def append(self, item: Outgoing) -> list[Outgoing]:
        """Queue ``item``; returns what was dropped to make room (or for being too old).

        An item larger than ``max_bytes`` on its own cannot wait here and is the one dropped.
        """
        size = item.size
        if size > self.max_bytes:
            self.dropped += 1
            return [item]
        items = self._items
        dropped = self.expire()
        room = self.max_bytes - size
        while items and (len(items) >= self.max_messages or self.bytes > room):
            dropped.append(self._take())
            self.dropped += 1
        items.append(item)
        self.bytes += size
        return dropped

    def expire(self) -> list[Outgoing]:
        """Take out (and return) what waited longer than ``max_age``, oldest first, counted in
        ``dropped_oldest``: append does it, and a sender should before sending what waited."""
        items = self._items
        if not items or time.time() - items[0].created <= self.max_age:
            return []
        limit = time.time() - self.max_age
        dropped = []
        while items and items[0].created < limit:
            dropped.append(self._take())
        self.dropped += len(dropped)
        return dropped

    def peek(self) -> Outgoing:
        return self._items[0]

    def popleft(self) -> Outgoing:
        """The oldest message, handed to the link (``done`` once settled)."""
        return self._take()

    def _take(self) -> Outgoing:
        item = self._items.popleft()
        self.bytes -= item.size
        return item

    def done(self, item: Outgoing) -> None:
        """The link settled ``item``: nothing is kept for it in memory."""

    def requeue(self, items: Iterable[Outgoing]) -> None:
        """Put messages a lost connection left in flight back in front, in their order.

        No bound drops them here: they were accepted already, the next append makes room.
        """
        for item in reversed(list(items)):
            self._items.appendleft(item)
            self.bytes += item.size

    def clear(self) -> list[Outgoing]:
        items = list(self._items)
        self._items.clear()
        self.bytes = 0
        return items

    def close(self) -> None:
        """Nothing to release in memory; a durable outbox writes and closes its file."""

    def oldest_age(self) -> float | None:
        """Seconds the front message has waited (None when empty; never negative, should the
        clock have stepped back)."""
        if not self._items:
            return None
        return max(0.0, time.time() - self._items[0].created)

    def stats(self) -> dict[str, Any]:
        return {
            "messages": len(self._items),
            "bytes": self.bytes,
            "oldest_age": self.oldest_age(),
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "max_age": self.max_age,
            "dropped_oldest": self.dropped,
            "durable": self.durable,
        }
