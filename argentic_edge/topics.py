"""Topics: Argentic's hierarchy, MQTT filters, ZeroMQ prefixes and the bus frame format.

Topics and filters are validated once, where they enter (config, CLI, a frame off the wire), and
passed on as values. Matching many filters against one topic goes through a tree of topic levels,
so its cost grows with the depth of the topic, not with the number of routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from argentic_edge.errors import EdgeError

MAX_TOPIC_BYTES = 65535  # MQTT's limit; the bus keeps to it so every bus topic can be bridged

# MQTT 3.1.1 section 1.5.3 and MQTT 5 section 1.5.4: a receiver MAY treat control characters
# and Unicode non-characters in a string as a malformed packet, and Mosquitto does: it
# disconnects the client. The bus carries any bytes; what goes to a broker must avoid these.
_FORBIDDEN_IN_MQTT = re.compile(
    "[\x01-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(
        f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
    )
    + "]"
)


def has_mqtt_forbidden_character(text: str) -> bool:
    """True when a broker may disconnect a client for sending ``text`` as a topic or filter."""
    return _FORBIDDEN_IN_MQTT.search(text) is not None


class TopicError(EdgeError, ValueError):
    """A topic or filter that cannot exist on the bus or on MQTT."""


class FrameError(ValueError):
    """A bus frame that is not ``<topic> <payload>``."""


def validate_topic_name(topic: str) -> str:
    """A concrete topic (no wildcards) that both the bus and MQTT can carry."""
    if not topic:
        raise TopicError("the topic is empty")
    if " " in topic:
        raise TopicError("a topic cannot contain a space (the bus frame is '<topic> <json>')")
    if "+" in topic or "#" in topic:
        raise TopicError("a topic name cannot contain the wildcards + or #")
    if "\x00" in topic:
        raise TopicError("a topic cannot contain NUL")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise TopicError(f"a topic is at most {MAX_TOPIC_BYTES} bytes")
    return topic


def can_share_a_topic(first: tuple[str, ...], second: tuple[str, ...]) -> bool:
    """True if one topic can match both filters, given as their levels (``a/+/c``, ``a/b/#``)."""
    for index in range(max(len(first), len(second))):
        a = first[index] if index < len(first) else None
        b = second[index] if index < len(second) else None
        if a == "#" or b == "#":
            return True
        if a is None or b is None:
            return False
        if a != "+" and b != "+" and a != b:
            return False
    return True


@dataclass(frozen=True)
class TopicFilter:
    """An MQTT-style filter (``+`` one level, ``#`` the rest), validated when built."""

    value: str
    levels: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = tuple(self.value.split("/"))
        object.__setattr__(self, "levels", levels)
        if not self.value:
            raise TopicError("the filter is empty")
        if " " in self.value or "\x00" in self.value:
            raise TopicError("a filter cannot contain a space or NUL")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise TopicError("# must be a whole level and the last one")
            if "+" in level and level != "+":
                raise TopicError("+ must be a whole level")

    def matches(self, topic: str) -> bool:
        parts = topic.split("/")
        for index, level in enumerate(self.levels):
            if level == "#":
                return True
            if index >= len(parts):
                return False
            if level != "+" and level != parts[index]:
                return False
        return len(parts) == len(self.levels)

    @property
    def zmq_prefix(self) -> str:
        """The longest literal prefix, subscribed in libzmq so it filters what it can.

        ``agent/+/status`` subscribes ``agent/``; ``agent/#`` subscribes ``agent`` because ``#``
        also matches the parent level itself; ``#`` subscribes everything.
        """
        literal: list[str] = []
        for level in self.levels:
            if level == "+":
                return "/".join(literal) + "/" if literal else ""
            if level == "#":
                return "/".join(literal)
            literal.append(level)
        return "/".join(literal)

    @property
    def is_wildcard(self) -> bool:
        return "+" in self.levels or "#" in self.levels

    def __str__(self) -> str:
        return self.value


def parse_filter(value: str) -> TopicFilter:
    return TopicFilter(value)


T = TypeVar("T")


class _Node(Generic[T]):
    __slots__ = ("children", "hash_values", "plus", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.plus: _Node[T] | None = None
        self.hash_values: list[T] = []
        self.values: list[T] = []


class TopicTree(Generic[T]):
    """Values stored under filters, found by topic: a named child, a ``+`` child and ``#`` values
    per level, like a broker's subscription tree."""

    def __init__(self, items: Iterable[tuple[TopicFilter, T]] = ()) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0
        for topic_filter, value in items:
            self.insert(topic_filter, value)

    def __len__(self) -> int:
        return self._size

    def insert(self, topic_filter: TopicFilter, value: T) -> None:
        node = self._root
        for level in topic_filter.levels:
            if level == "#":
                node.hash_values.append(value)
                self._size += 1
                return
            if level == "+":
                if node.plus is None:
                    node.plus = _Node()
                node = node.plus
            else:
                node = node.children.setdefault(level, _Node())
        node.values.append(value)
        self._size += 1

    def remove(self, topic_filter: TopicFilter, value: T) -> bool:
        node: _Node[T] | None = self._root
        for level in topic_filter.levels:
            assert node is not None
            if level == "#":
                return self._discard(node.hash_values, value)
            node = node.plus if level == "+" else node.children.get(level)
            if node is None:
                return False
        return node is not None and self._discard(node.values, value)

    def _discard(self, values: list[T], value: T) -> bool:
        if value in values:
            values.remove(value)
            self._size -= 1
            return True
        return False

    def match(self, topic: str) -> list[T]:
        """Every value whose filter matches ``topic``, each once per filter it was stored under."""
        found: list[T] = []
        self._collect(self._root, topic.split("/"), 0, found)
        return found

    def _collect(self, node: _Node[T], parts: list[str], index: int, found: list[T]) -> None:
        found.extend(node.hash_values)
        if index == len(parts):
            found.extend(node.values)
            return
        child = node.children.get(parts[index])
        if child is not None:
            self._collect(child, parts, index + 1, found)
        if node.plus is not None:
            self._collect(node.plus, parts, index + 1, found)

    def __iter__(self) -> Iterator[T]:
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from node.hash_values
            yield from node.values
            stack.extend(node.children.values())
            if node.plus is not None:
                stack.append(node.plus)


# --- frames on the bus ---------------------------------------------------------------------


def encode_frame(topic: str, payload: bytes, encoding: str = "utf-8") -> bytes:
    """Argentic's ZeroMQ wire format: one frame, the topic, one space, the payload."""
    return topic.encode(encoding) + b" " + payload


def decode_frame(frame: bytes, encoding: str = "utf-8") -> tuple[str, bytes]:
    """Split a frame on its first space; the payload is returned byte for byte."""
    topic_bytes, sep, payload = frame.partition(b" ")
    if not sep:
        raise FrameError("no space between topic and payload")
    if not topic_bytes:
        raise FrameError("empty topic")
    try:
        topic = topic_bytes.decode(encoding)
    except UnicodeDecodeError:
        raise FrameError(f"the topic is not valid {encoding}") from None
    return topic, payload


# --- Argentic's message categories ----------------------------------------------------------

CATEGORIES: dict[str, tuple[str, ...]] = {
    "tool_calls": ("agent/tools/call/#", "agent/+/tools/call/#", "tools/+/call/#"),
    "responses": (
        "agent/tools/response/#",
        "agent/response/#",
        "agent/query/response",
        "agent/+/results",
        "supervisor/results",
        "tools/+/response/#",
    ),
    "status": ("agent/status/#", "agent/+/status/#", "tools/+/status", "_ping/#"),
    "tool_registry": ("agent/tools/register", "agent/+/tools/register", "tools/+/register"),
    "logs": ("logs/#", "agent/log"),
}

_CATEGORY_TREE: TopicTree[str] = TopicTree(
    (TopicFilter(pattern), name) for name, patterns in CATEGORIES.items() for pattern in patterns
)


def category_of(topic: str) -> str | None:
    """The QoS/retain category of a topic (the seed's ``qos_levels`` keys), None if it has none.

    When several match (``agent/x/tools/call/...`` is both a tool call and, level-wise, nothing
    else), the order of CATEGORIES decides.
    """
    found = _CATEGORY_TREE.match(topic)
    if not found:
        return None
    return min(found, key=list(CATEGORIES).index)
