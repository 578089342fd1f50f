"""LoopGuard: recognise the echo of a message the bridge itself injected.

A ``both`` route on overlapping filters would forward a message back where it came from, forever:
what the bridge publishes on the bus reaches its own bus subscription, and on MQTT 3.1.1 what it
publishes to the broker comes back on its own subscription (MQTT 5's no-local option stops that
one at the broker). The bridge records a fingerprint of each message it injects on a side where
its echo will come back, and the first matching message seen from that side is taken for the echo
and dropped.

The set is bounded in two ways. Entries live ``ttl`` seconds: an echo comes back within
milliseconds, so an entry still there after seconds belongs to a message whose echo was lost
(a full queue), and keeping it longer would only risk swallowing a genuine repeat. And at most
``max_entries`` are kept: the oldest go first, and entries already matched go without harm.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

DEFAULT_TTL = 5.0
DEFAULT_MAX_ENTRIES = 20_000


def fingerprint(topic: str, payload: bytes) -> int:
    """Python's keyed SipHash of (topic, payload): 64 bits, fast, and collisions among the few
    thousand entries alive at once are negligible (it is never used across processes)."""
    return hash((topic, payload))


class LoopGuard:
    """A time-limited multiset of fingerprints: ``add`` what was injected, ``consume`` what
    came in.

    ``_order`` keeps every entry in insertion order with its expiry; ``_live`` keeps, per
    fingerprint, the expiries of entries not matched yet, oldest first. Matching removes the
    oldest live entry of that fingerprint; expiry removes an entry from ``_live`` only if it is
    still there, so a matched entry expiring later never takes a newer identical one with it.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._order: deque[tuple[float, int]] = deque()
        self._live: dict[int, deque[float]] = {}
        self.echoes = 0  # messages recognised as echoes and dropped
        self.expired = 0  # entries whose echo never came
        self.evicted = 0  # live entries pushed out by the size bound before their time

    def __len__(self) -> int:
        """Entries still waiting for their echo."""
        return sum(len(expiries) for expiries in self._live.values())

    def add(self, topic: str, payload: bytes) -> None:
        now = self._clock()
        self._expire(now)
        if len(self._order) >= self.max_entries and self._forget(*self._order.popleft()):
            self.evicted += 1
        key = fingerprint(topic, payload)
        expiry = now + self.ttl
        self._order.append((expiry, key))
        live = self._live.get(key)
        if live is None:
            self._live[key] = deque((expiry,))
        else:
            live.append(expiry)

    def consume(self, topic: str, payload: bytes) -> bool:
        """True (and the entry is used up) if this message is the echo of one we injected."""
        if not self._live:
            return False
        self._expire(self._clock())
        key = fingerprint(topic, payload)
        live = self._live.get(key)
        if live is None:
            return False
        live.popleft()
        if not live:
            del self._live[key]
        self.echoes += 1
        return True

    def _expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            if self._forget(*order.popleft()):
                self.expired += 1

    def _forget(self, expiry: float, key: int) -> bool:
        """Drop the entry (expiry, key) if it is still live; False if it was matched already."""
        live = self._live.get(key)
        if live is None or live[0] > expiry:
            return False
        live.popleft()
        if not live:
            del self._live[key]
        return True

    def stats(self) -> dict[str, int]:
        return {
            "waiting": len(self),
            "echoes_dropped": self.echoes,
            "expired": self.expired,
            "evicted": self.evicted,
        }
