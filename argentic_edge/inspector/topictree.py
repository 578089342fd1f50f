"""Every topic seen on the bus, like MQTT Explorer's tree: count, rate, bytes, last seen and the
last message, in a bounded table.

Caps (documented in docs/inspector.md): at most ``MAX_TOPICS`` topics, the least recently seen
evicted first and counted; the last payload of each kept up to ``MAX_LAST_PAYLOAD`` bytes (longer
ones are cut and marked), so the table stays under about 30 MB however many topics a flood
invents. The page builds the tree from the flat, sorted list; a flat list is what a filter needs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from argentic_edge.inspector.envelope import Envelope
from argentic_edge.topics import TopicFilter

MAX_TOPICS = 10_000
MAX_LAST_PAYLOAD = 2048  # bytes of the last message kept per topic
PREVIEW = 120  # characters of the last message in the list (the whole one: ?topic=)
RATE_WINDOW = 10.0  # seconds: a topic's rate is its count over the last complete window


@dataclass(slots=True)
class TopicEntry:
    """One topic's counters and its last message (cut to MAX_LAST_PAYLOAD bytes)."""

    topic: str
    first_seen: float
    last_seen: float = 0.0
    count: int = 0
    total_bytes: int = 0
    last_payload: bytes = b""
    last_size: int = 0
    last: Envelope = field(default_factory=Envelope)
    window_start: float = 0.0
    window_count: int = 0
    rate: float = 0.0

    def add(self, payload: bytes, envelope: Envelope, now: float) -> None:
        self.count += 1
        self.total_bytes += len(payload)
        self.last_seen = now
        self.last_payload = payload[:MAX_LAST_PAYLOAD]
        self.last_size = len(payload)
        self.last = envelope
        if now - self.window_start >= RATE_WINDOW:
            elapsed = now - self.window_start
            self.rate = self.window_count / elapsed if elapsed < 2 * RATE_WINDOW else 0.0
            self.window_start, self.window_count = now, 0
        self.window_count += 1

    def current_rate(self, now: float) -> float:
        """Messages a second over the last complete window (0 once the topic went quiet)."""
        return self.rate if now - self.window_start < 2 * RATE_WINDOW else 0.0

    def row(self, now: float) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "count": self.count,
            "bytes": self.total_bytes,
            "rate": round(self.current_rate(now), 3),
            "last_seen": self.last_seen,
            "age": round(now - self.last_seen, 3),
            "type": self.last.type,
            "source": self.last.source,
            "problem": self.last.problem,
            "preview": self.last_payload[:PREVIEW].decode("utf-8", "replace"),
        }

    def detail(self, now: float) -> dict[str, Any]:
        return {
            **self.row(now),
            "first_seen": self.first_seen,
            "envelope": self.last.summary(),
            "payload": self.last_payload.decode("utf-8", "replace"),
            "payload_size": self.last_size,
            "truncated": self.last_size > len(self.last_payload),
        }


@dataclass
class TopicTable:
    """The bounded table, fed one message at a time. Pure: the caller passes the clock."""

    max_topics: int = MAX_TOPICS
    entries: OrderedDict[str, TopicEntry] = field(default_factory=OrderedDict)
    evicted: int = 0

    def add(self, topic: str, payload: bytes, envelope: Envelope, now: float) -> None:
        entries = self.entries
        entry = entries.get(topic)
        if entry is None:
            entry = entries[topic] = TopicEntry(topic, now, window_start=now)
            if len(entries) > self.max_topics:
                entries.popitem(last=False)
                self.evicted += 1
        else:
            entries.move_to_end(topic)
        entry.add(payload, envelope, now)

    def rows(self, topic_filter: TopicFilter | None, now: float, limit: int) -> dict[str, Any]:
        """Sorted by topic; ``limit`` rows at most, ``total`` says how many matched."""
        matching = [
            entry
            for entry in self.entries.values()
            if topic_filter is None or topic_filter.matches(entry.topic)
        ]
        matching.sort(key=lambda entry: entry.topic)
        return {
            "topics": [entry.row(now) for entry in matching[:limit]],
            "total": len(matching),
            "kept": len(self.entries),
            "max_topics": self.max_topics,
            "evicted": self.evicted,
        }

    def detail(self, topic: str, now: float) -> dict[str, Any] | None:
        entry = self.entries.get(topic)
        return None if entry is None else entry.detail(now)
