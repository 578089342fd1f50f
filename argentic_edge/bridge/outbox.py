"""Outbox: bus-to-broker messages waiting for the broker, bounded and in order.

Messages wait here while the broker is away, and while the broker's in-flight window is full.
The bus itself is fire-and-forget (QoS 0), so when a bound is reached the oldest message is
dropped and counted, never the producer blocked: the newest state is the one worth delivering.

This is the memory outbox; bridge/durable.py keeps the same interface on disk. The life of an
item: ``append``, ``popleft`` (handed to the link), then ``done`` once the broker has it or it
is dropped, or ``requeue`` when the connection went first (back to the front, in order). One
that never waited (the broker's window had room) is only ``track``ed before it goes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from argentic_edge.bridge.routes import Counters


@dataclass(slots=True, eq=False)
class Outgoing:
    """One publication to make. ``counters`` is the route's (None for the uplink's own
    messages); ``done`` is resolved when the broker has it, for callers that wait; ``created``
    (wall clock, so it means the same after a restart) bounds how long it may wait."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    counters: Counters | None = None
    done: asyncio.Future[None] | None = field(default=None)
    echo: bool = False  # its echo will come back on our own subscription
    created: float = field(default_factory=time.time)
    # Which route it came through, so a durable outbox can give its counters back after a
    # restart (None for the uplink's own messages).
    route_key: str | None = None
    size: int = field(init=False)  # what it counts against max_bytes, read at every move

    def __post_init__(self) -> None:
        self.size = len(self.payload) + len(self.topic)


class Outbox:
    """A FIFO bounded by message count, bytes and age; past a bound the oldest go."""

    durable = False

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        max_age: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._items: deque[Outgoing] = deque()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def append(self, item: Outgoing) -> list[Outgoing]:
        """Queue ``item``; returns what was dropped to make room (or had waited too long).

        An item larger than ``max_bytes`` on its own cannot wait here and is the one dropped.
        """
        if item.size > self.max_bytes:
            self.dropped += 1
            return [item]
        dropped = self.expire()
        while self._items and (
            len(self._items) >= self.max_messages or self.bytes + item.size > self.max_bytes
        ):
            dropped.append(self._take())
            self.dropped += 1
        self._items.append(item)
        self.bytes += item.size
        return dropped

    def expire(self) -> list[Outgoing]:
        """Drop (and return) the items older than ``max_age``, oldest first."""
        dropped: list[Outgoing] = []
        items = self._items
        if items and self._clock() - items[0].created > self.max_age:
            limit = self._clock() - self.max_age
            while items and items[0].created < limit:
                dropped.append(self._take())
            self.dropped += len(dropped)
        return dropped

    def peek(self) -> Outgoing:
        return self._items[0]

    def popleft(self) -> Outgoing:
        return self._take()

    def _take(self) -> Outgoing:
        item = self._items.popleft()
        self.bytes -= item.size
        return item

    def track(self, item: Outgoing) -> None:
        """``item`` goes to the broker at once, without waiting here: nothing to keep in memory
        (a durable outbox keeps it on disk until ``done``, as if it had waited)."""

    def connected(self, up: bool) -> None:
        """Whether a broker is connected: only a durable outbox times its writes by it."""

    def done(self, item: Outgoing) -> None:
        """The broker has it (or it was dropped): nothing to keep in memory."""

    def requeue(self, items: Iterable[Outgoing]) -> None:
        """Put items handed out and not settled back at the front, in their order."""
        for item in reversed(list(items)):
            self._items.appendleft(item)
            self.bytes += item.size

    def clear(self) -> list[Outgoing]:
        items = list(self._items)
        self._items.clear()
        self.bytes = 0
        return items

    def close(self) -> None:
        """Nothing to release in memory (the durable outbox closes its database)."""

    def stats(self) -> dict[str, Any]:
        oldest = self._clock() - self._items[0].created if self._items else None
        return {
            "messages": len(self._items),
            "bytes": self.bytes,
            "oldest_age": oldest,
            "max_messages": self.max_messages,
            "max_bytes": self.max_bytes,
            "max_age": self.max_age,
            "dropped_oldest": self.dropped,
            "durable": self.durable,
        }
