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
- **Skips, counted.** When a saturated window ends, what queued meanwhile is stale; a reader
  that wants fresh data (the agents registry) reads it and discards it unhandled (cheap: no
  decoding), counted exactly as ``skipped``. A reader that must not lose what it could still
  deliver (the bridge) keeps it and reads it next. libzmq does not report how many frames it
  dropped at a full queue, so that number cannot be counted; what can be seen is the reader
  falling that far behind: ``queue_full`` counts each run of the socket's receive high-water
  mark (RCVHWM) in frames read back to back without the queue once running empty. Each such
  run means the queue was at or near its bound, where libzmq drops further frames for this
  reader (the count is of runs, not of frames dropped).

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
    """What a reader did (the module docstring says exactly what each number counts)."""

    frames: int = 0  # single-frame messages handed to the handler
    skipped: int = 0  # frames read and discarded unhandled after a saturated window
    saturated_windows: int = 0  # windows in which the CPU budget ran out
    queue_full: int = 0  # runs of RCVHWM frames read without the queue running empty
    multipart: int = 0  # multipart messages discarded whole (Argentic sends one frame)
    errors: int = 0  # frames whose handler raised (a bug: logged once with its traceback)


class BusReader:
    """Reads ``socket`` and calls ``handle(frame)`` for each single-frame message, on a budget.

    ``share`` is the fraction of one CPU the reader may spend handling frames (0 < share <= 1);
    ``discard_stale`` says what to do with the backlog after a saturated window. ``run()`` is
    the task body; cancel the task to stop it (it is cancellable at every batch).
    """

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        handle: Callable[[bytes], None],
        *,
        name: str,
        share: float,
        discard_stale: bool,
        window: float = WINDOW,
        batch: int = BATCH,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        self.socket = socket
        self.handle = handle
        self.name = name
        self.budget = share * window
        self.window = window
        self.batch = batch
        self.discard_stale = discard_stale
        self.stats = ReaderStats()
        self._sync: zmq.Socket[Any] = zmq.Socket.shadow(socket.underlying)
        self._high_water_mark = max(1, int(self._sync.getsockopt(zmq.RCVHWM)))
        self._behind = 0  # frames read since the queue last ran empty

    async def run(self) -> None:
        """Wait for frames, handle them in batches, pause past the budget; until cancelled."""
        clock = time.monotonic
        cpu = time.thread_time
        window_start, spent = clock(), 0.0
        while True:
            await self.socket.poll()  # POLLIN, no timeout
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
                log.warning(
                    "%s: the bus brings more than this reader's CPU budget (%.0f%% of "
                    "a core); sampling from now on, counted in the status, not logged "
                    "again",
                    self.name,
                    100 * self.budget / self.window,
                )
            await asyncio.sleep(max(0.0, window_start + self.window - clock()))
            window_start, spent = clock(), 0.0
            if self.discard_stale:
                started = cpu()
                await self._discard_backlog()  # its cost is the new window's
                spent = cpu() - started

    def _read_batch(self) -> None:
        recv, handle, stats = self._sync.recv, self.handle, self.stats
        read = 0
        try:
            for read in range(1, self.batch + 1):  # noqa: B007 - the count is used after
                frame = recv(zmq.NOBLOCK, copy=False)
                if frame.more:
                    self._discard_rest()
                    continue
                stats.frames += 1
                try:
                    handle(frame.bytes)
                except Exception:
                    stats.errors += 1
                    if stats.errors == 1:
                        log.exception(
                            "%s: error while handling a bus message; continuing, "
                            "counting further errors, not logged again",
                            self.name,
                        )
        except zmq.Again:
            self._note_run(read - 1, emptied=True)
            return
        self._note_run(read, emptied=False)

    def _note_run(self, read: int, *, emptied: bool) -> None:
        self._behind += read
        if self._behind >= self._high_water_mark:
            self.stats.queue_full += 1
            self._behind = 0
        if emptied:
            self._behind = 0

    def _discard_rest(self) -> None:
        """The remaining parts of a multipart message (libzmq delivers them all at once)."""
        parts = 2
        while self._sync.recv(copy=False).more:
            parts += 1
        self.stats.multipart += 1
        if self.stats.multipart == 1:
            log.warning(
                "%s: discarding a multipart message (%d parts; Argentic sends one frame "
                "'<topic> <json>'); counting them, not logged again",
                self.name,
                parts,
            )

    async def _discard_backlog(self) -> None:
        """Read what queued during the pause without handling it, in batches, and count it.

        At most one queue's worth: a flood that keeps coming is the next window's to sample."""
        recv, found, more = self._sync.recv, 0, False
        while found < self._high_water_mark:
            try:
                for _ in range(self.batch * 16):
                    more = recv(zmq.NOBLOCK, copy=False).more
                    found += 1
            except zmq.Again:
                self._note_run(found, emptied=True)
                break
            await asyncio.sleep(0)
        else:
            self._note_run(found, emptied=False)
        if more:
            self._discard_rest()  # never leave a continuation part to be read as a message
        self.stats.skipped += found

    def status(self) -> dict[str, Any]:
        """The counters, and the line the status page shows while sampling."""
        stats = self.stats
        document: dict[str, Any] = asdict(stats)
        document["cpu_share"] = round(self.budget / self.window, 3)
        document["receive_high_water_mark"] = self._high_water_mark
        notes = []
        if stats.saturated_windows:
            notes.append(
                f"sampling under load: {stats.skipped} skipped"
                if self.discard_stale
                else f"over its CPU budget in {stats.saturated_windows} window(s)"
            )
        if stats.queue_full:
            notes.append(
                f"fell a full queue behind {stats.queue_full} time(s): the bus dropped "
                "frames for it (libzmq does not count them)"
            )
        document["load"] = "; ".join(notes) or None
        return document
