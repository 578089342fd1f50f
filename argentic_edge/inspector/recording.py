"""The recording format shared by ``argentic-edge record``/``replay`` and the page's recorder.

JSON lines, one message each: ``{"time": <unix seconds>, "topic": "...", "payload": "..."}``.
A payload that is not UTF-8 is written as ``"payload_base64"`` instead, so every payload comes
back byte for byte. Replay keeps the gaps between the ``time`` values.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from argentic_edge.errors import EdgeError


class RecordingError(EdgeError):
    """A recording file that cannot be read back: the line and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Recorded:
    time: float
    topic: str
    payload: bytes


def line(topic: str, payload: bytes, now: float) -> bytes:
    """One JSON line (with its newline) for a message seen at ``now``."""
    entry: dict[str, object] = {"time": now, "topic": topic}
    try:
        entry["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        entry["payload_base64"] = base64.b64encode(payload).decode("ascii")
    return json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n"


def _entry(text: str, number: int) -> Recorded:
    try:
        entry = json.loads(text)
    except ValueError:
        raise RecordingError(f"line {number}: not JSON") from None
    if not isinstance(entry, dict):
        raise RecordingError(f"line {number}: expected an object with time, topic and payload")
    when, topic = entry.get("time"), entry.get("topic")
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise RecordingError(f"line {number}: 'time' must be a number of seconds, got {when!r}")
    if not isinstance(topic, str) or not topic:
        raise RecordingError(f"line {number}: 'topic' must be a non-empty string, got {topic!r}")
    if isinstance(entry.get("payload"), str):
        payload = entry["payload"].encode("utf-8")
    elif isinstance(entry.get("payload_base64"), str):
        try:
            payload = base64.b64decode(entry["payload_base64"], validate=True)
        except ValueError:
            raise RecordingError(f"line {number}: 'payload_base64' is not base64") from None
    else:
        raise RecordingError(f"line {number}: expected 'payload' or 'payload_base64' text")
    return Recorded(float(when), topic, payload)


def read(stream: IO[str]) -> Iterator[Recorded]:
    """The messages of a recording, in file order; RecordingError names a bad line."""
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield _entry(text, number)


def load(path: Path) -> list[Recorded]:
    """A whole recording; RecordingError when it cannot be read or is empty."""
    try:
        with path.open(encoding="utf-8") as stream:
            messages = list(read(stream))
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{path} is not UTF-8 text") from None
    if not messages:
        raise RecordingError(f"{path} holds no messages")
    return messages
