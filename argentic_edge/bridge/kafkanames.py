"""Bus topics and Kafka topic names, both ways, and MQTT filters as Kafka subscription patterns.

Kafka allows only ``[a-zA-Z0-9._-]`` in a topic name, at most 249 of them, so ``agent/tools/call``
cannot be a Kafka topic as it is. The mapping here turns the level separator ``/`` into the
configured separator (``.`` by default) and writes every other character Kafka refuses, and the
separator itself where a topic holds it literally, as the escape character followed by two
upper-case hex digits per UTF-8 byte (``_20`` for a space, ``_2E`` for a literal ``.``).

The escape character is written as it is unless two upper-case hex digits follow it, so the
names Argentic uses (``ask_question``, lower-case uuids) stay readable: only an escape character
that would read as an escape is escaped itself (``sensor_A1`` becomes ``sensor_5FA1``). Encoding
runs from the end of a level so that this is known when the character is written; decoding reads
from the start. Every bus topic comes back exactly (``to_bus(to_kafka(t)) == t``), which the
property tests check.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from argentic_edge.bridge.link import LinkError

MAX_NAME = 249  # Kafka refuses longer topic names
LEGAL = frozenset(string.ascii_letters + string.digits + "._-")
PUNCTUATION = "._-"  # what the separator and the escape character may be: never a hex digit
_HEX = frozenset("0123456789ABCDEF")
_PLAIN = re.compile(r"[A-Za-z0-9._-]*")

# Reason keys for the uplink's drop counters (service.DROP_REASONS explains each).
TOO_LONG = "kafka_name_too_long"
RESERVED = "kafka_name_reserved"
UNDECODABLE = "kafka_name_undecodable"


class KafkaNameError(LinkError):
    """A topic with no Kafka name, or a Kafka name with no bus topic; ``reason`` is the key the
    uplink counts it under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TopicMap:
    """The mapping of one Kafka uplink (``topic_map`` in its configuration)."""

    separator: str = "."
    escape: str = "_"

    def __post_init__(self) -> None:
        for key in ("separator", "escape"):
            value = getattr(self, key)
            if len(value) != 1 or value not in PUNCTUATION:
                raise ValueError(f"topic_map.{key}: expected one of {' '.join(PUNCTUATION)}")
        if self.separator == self.escape:
            raise ValueError("topic_map.separator and topic_map.escape must differ")

    # --- bus -> Kafka ---------------------------------------------------------------------------

    def to_kafka(self, topic: str) -> str:
        """The Kafka name of a bus topic; KafkaNameError (with its reason key) if it has none."""
        name = self.separator.join(self._level(level) for level in topic.split("/"))
        if len(name) > MAX_NAME:
            raise KafkaNameError(
                TOO_LONG,
                f"{topic[:60]!r}... is {len(name)} characters as a Kafka topic name "
                f"({name[:40]}...); Kafka allows at most {MAX_NAME}",
            )
        if name in (".", "..") or name.startswith("__"):
            raise KafkaNameError(
                RESERVED,
                f"{topic!r} would be the Kafka topic {name!r}, a name Kafka keeps for itself "
                "('.', '..' and names starting with '__')",
            )
        return name

    def _level(self, level: str) -> str:
        """One level, encoded from its end: an escape character is escaped only when hex
        digits follow it (the separator that ends a level is never one)."""
        if _PLAIN.fullmatch(level) and self.separator not in level and self.escape not in level:
            return level  # the common case, and the fast one
        pieces: list[str] = []
        ahead = ""  # the first two characters of what is already encoded after this point
        for char in reversed(level):
            plain = char in LEGAL and char not in (self.separator, self.escape)
            if plain or (char == self.escape and not (len(ahead) == 2 and set(ahead) <= _HEX)):
                piece = char
            else:
                try:
                    raw = char.encode("utf-8")
                except UnicodeEncodeError:
                    raise KafkaNameError(
                        UNDECODABLE, f"{level[:60]!r} is not valid UTF-8 text"
                    ) from None
                piece = "".join(f"{self.escape}{byte:02X}" for byte in raw)
            pieces.append(piece)
            ahead = (piece + ahead)[:2]
        return "".join(reversed(pieces))

    # --- Kafka -> bus ---------------------------------------------------------------------------

    def to_bus(self, name: str) -> str:
        """The bus topic of a Kafka name. A name this mapping did not write decodes all the same
        where it can (``my_tool`` from an Argentic agent is ``my_tool``); KafkaNameError where
        its escapes are not UTF-8."""
        out: list[str] = []
        pending = bytearray()
        index, end = 0, len(name)
        while index < end:
            char = name[index]
            if (
                char == self.escape
                and index + 3 <= end
                and set(name[index + 1 : index + 3]) <= _HEX
            ):
                pending.append(int(name[index + 1 : index + 3], 16))
                index += 3
                continue
            if pending:
                out.append(self._decoded(pending, name))
                pending.clear()
            out.append("/" if char == self.separator else char)
            index += 1
        if pending:
            out.append(self._decoded(pending, name))
        return "".join(out)

    @staticmethod
    def _decoded(raw: bytearray, name: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KafkaNameError(
                UNDECODABLE, f"the Kafka topic {name[:80]!r} has escapes that are not UTF-8"
            ) from None

    # --- filters -> patterns --------------------------------------------------------------------

    def pattern(self, topic_filter: str) -> str:
        """A regular expression matching the Kafka names of the topics ``topic_filter`` matches
        (``+``: one level, ``#``: this level and all below, as in MQTT)."""
        sep = re.escape(self.separator)
        levels = topic_filter.split("/")
        parts: list[str] = []
        for index, level in enumerate(levels):
            if level == "#":
                tail = ".*" if index == 0 else f"(?:{sep}.*)?"
                return "".join(parts) + tail
            if index:
                parts.append(sep)
            parts.append(f"[^{sep}]*" if level == "+" else re.escape(self._level(level)))
        return "".join(parts)

    def subscription(self, filters: Sequence[str]) -> re.Pattern[str]:
        """One pattern for all ``filters`` (a Kafka consumer subscribes to one), whole names."""
        joined = "|".join(f"(?:{self.pattern(topic_filter)})" for topic_filter in filters)
        return re.compile(f"^(?:{joined})\\Z")
