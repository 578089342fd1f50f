"""Recent warnings for the status page: a bounded logging handler on the ``argentic_edge`` logger.

One handler per process, attached while at least one web application runs, so the list survives
the web service's restarts (every configuration save restarts it). Secrets cannot reach it through
configuration values (they are Secret objects that print masked); the one record that carries a
secret on purpose (the generated password) is marked ``secret`` and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

LOGGER = "argentic_edge"
CAPACITY = 50
MAX_MESSAGE = 500


class RecentWarnings(logging.Handler):
    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(level=logging.WARNING)
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.total = 0
        self._users = 0
        self._users_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "secret", False):
            return
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break the caller's logging
            message = str(record.msg)
        self.total += 1
        self._records.append(
            {
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": message[:MAX_MESSAGE],
            }
        )

    def records(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._records))

    def attach(self) -> None:
        with self._users_lock:
            self._users += 1
            if self._users == 1:
                logging.getLogger(LOGGER).addHandler(self)

    def detach(self) -> None:
        with self._users_lock:
            self._users -= 1
            if self._users == 0:
                logging.getLogger(LOGGER).removeHandler(self)


WARNINGS = RecentWarnings()
