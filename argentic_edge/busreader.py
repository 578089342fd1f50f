"""Reading the bus from Python without letting one publisher take the appliance: every Python
reader of bus frames (the agents registry, the bridge) reads through this.

Three bounds, because a flood on a watched topic arrives faster than Python can read it:

- **Batches.** At most ``batch`` frames are handled per turn, then the reader yields to the event
  loop. pyzmq's ``await recv()`` completes without yielding while frames are queued, so a reader
  that awaits each frame starves every other task (the web server, the MQTT keepalive, SIGTERM)
  for as long as the flood lasts.
- **A CPU budget.** Within each ``window`` seconds the reader may spend ``share × window`` seconds
  of CPU (the event loop thread's, ``time.thread_time``) handling frames. Past that it stops
  reading until the window ends: its socket's queue fills and libzmq drops further frames for
  this subscriber only, in C, without slowing the bus or its other subscribers.
- **Skips, counted.** When a saturated window ends, what queued meanwhile is stale; it is read
  and discarded unhandled (cheap: no decoding) and counted exactly as ``skipped``. libzmq does
  not tell how many frames it dropped at a full queue, so that number cannot be counted; when
  the backlog found after a pause reaches the socket's receive high-water mark, the queue was
  full and libzmq was dropping too: that is counted as ``queue_full`` (times, not frames).

Argentic writes one frame per message (``<topic> <json>``) and reads one per ``recv``; a
multipart message is not Argentic's and its continuation parts would bypass the subscription
filter (libzmq matches the first part only), so a multipart message is discarded whole, counted
as ``multipart`` and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)

BATCH = 256  # frames handled per turn before other tasks run (a few ms of handling)
WINDOW = 1.0  # seconds over which the CPU budget is measured


@dataclass
class ReaderStats:
    """What a reader did; ``skipped``, ``saturated_windows`` and ``queue_full`` are the load
    signals (see the module docstring for exactly what each counts)."""

    frames: int = 0  # single-frame messages handed to the handler
    skipped: int = 0  # frames read and discarded unhandled after a saturated window
    saturated_windows: int = 0  # windows in which the CPU budget ran out
    queue_full: int = 0  # backlogs found at the receive high-water mark (libzmq dropped more)
    multipart: int = 0  # multipart messages discarded whole (Argentic sends one frame)

    @property
    def sampling(self) -> bool:
        return self.saturated_windows > 0


class BusReader:
    """Reads ``socket`` and calls ``handle(frame)`` for each single-frame message, on a budget.

    ``share`` is the fraction of one CPU the reader may use (0 < share <= 1). ``run()`` is the
    task body; cancel the task to stop it (it is cancellable at every batch).
    """

    def __init__(self, socket: zmq.asyncio.Socket, handle: Callable[[bytes], None], *,
                 name: str, share: float, window: float = WINDOW, batch: int = BATCH) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        self.socket = socket
        self.handle = handle
        self.name = name
        self.budget = share * window
        self.window = window
        self.batch = batch
        self.stats = ReaderStats()
        self._sync = zmq.Socket.shadow(socket.underlying)
        self._high_water_mark = max(1, self._sync.getsockopt(zmq.RCVHWM))

    async def run(self) -> None:
        """Wait for frames, handle them in batches, pause past the budget; until cancelled."""
        clock = time.monotonic
        cpu = time.thread_time
        window_start, spent = clock(), 0.0
        while True:
            await self.socket.poll(flags=zmq.POLLIN)
            now = clock()
            if now - window_start >= self.window:
                window_start, spent = now, 0.0
            started = cpu()
            self._read_batch()
            spent += cpu() - started
            if spent < self.budget:
                await asyncio.sleep(0)  # let every other task run between batches
                continue
            self.stats.saturated_windows += 1
            if self.stats.saturated_windows == 1:
                log.warning("%s: the bus brings more than this reader's CPU budget (%.0f%% of "
                            "a core); sampling: skipped frames are counted in the status, "
                            "not logged again", self.name, 100 * self.budget / self.window)
            await asyncio.sleep(max(0.0, window_start + self.window - clock()))
            window_start, spent = clock(), 0.0
            await self._discard_backlog()

    def _read_batch(self) -> None:
        recv, handle, stats = self._sync.recv, self.handle, self.stats
        for _ in range(self.batch):
            try:
                frame = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if frame.more:
                self._discard_rest()
                continue
            stats.frames += 1
            try:
                handle(frame.bytes)
            except Exception:
                log.exception("%s: error while handling a bus message; continuing", self.name)

    def _discard_rest(self) -> None:
        """The remaining parts of a multipart message (libzmq delivers them all at once)."""
        parts = 2
        while self._sync.recv(copy=False).more:
            parts += 1
        self.stats.multipart += 1
        if self.stats.multipart == 1:
            log.warning("%s: discarding a multipart message (%d parts; Argentic sends one frame "
                        "'<topic> <json>'); counting them, not logged again", self.name, parts)

    async def _discard_backlog(self) -> None:
        """Read what queued during the pause without handling it, in batches, and count it."""
        recv, found, more = self._sync.recv, 0, False
        while found < self._high_water_mark:
            try:
                for _ in range(self.batch * 16):
                    more = recv(zmq.NOBLOCK, copy=False).more
                    found += 1
            except zmq.Again:
                break
            await asyncio.sleep(0)
        if more:
            self._discard_rest()  # never leave a continuation part to be read as a message
        self.stats.skipped += found
        if found >= self._high_water_mark:
            self.stats.queue_full += 1

    def status(self) -> dict[str, Any]:
        """The counters, and the line the status page shows while sampling."""
        document: dict[str, Any] = asdict(self.stats)
        document["cpu_share"] = round(self.budget / self.window, 3)
        document["sampling"] = (f"sampling under load: {self.stats.skipped} skipped"
                                if self.stats.sampling else None)
        return document
