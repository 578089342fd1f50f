"""The page's recorder: bus messages matching a filter, appended to one file as the recording
format's JSON lines, up to ``MAX_BYTES`` (then it stops by itself and says so)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import IO, Any

from argentic_edge.inspector.recording import line
from argentic_edge.topics import TopicFilter

log = logging.getLogger(__name__)

MAX_BYTES = 50 * 1000 * 1000  # a recording stops itself at this size


class Recorder:
    """One recording into ``path`` (truncated when it starts)."""

    def __init__(self, path: Path, topic_filter: TopicFilter, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.filter = topic_filter
        self.max_bytes = max_bytes
        self.started = time.time()
        self.stopped: float | None = None
        self.messages = 0
        self.bytes = 0
        self.reason: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("wb")

    def add(self, topic: str, payload: bytes, now: float) -> None:
        if self._file is None or not self.filter.matches(topic):
            return
        text = line(topic, payload, now)
        if self.bytes + len(text) > self.max_bytes:
            self.stop(f"reached its limit of {self.max_bytes} bytes")
            return
        try:
            self._file.write(text)
        except OSError as exc:
            log.warning("inspector: the recording stopped: cannot write %s: %s", self.path, exc)
            self.stop(f"cannot write: {exc.strerror}")
            return
        self.messages += 1
        self.bytes += len(text)

    @property
    def running(self) -> bool:
        return self._file is not None

    def stop(self, reason: str = "stopped") -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.stopped, self.reason = time.time(), reason

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "filter": self.filter.value,
            "started": self.started,
            "stopped": self.stopped,
            "messages": self.messages,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "reason": self.reason,
        }
