"""The inspector service: reads every bus message, but only while someone watches.

Someone watches while an event stream is connected (every inspector page holds one), a
recording runs, or an API read came within the last ``LEASE`` seconds. Then the service joins the
bus with a SUB socket subscribed to everything and reads it through ``BusReader`` on a CPU budget
of ``CPU_SHARE`` of one core: under a flood it samples, its status says so, and the reader counts
what it skipped. When nobody watches the socket is closed, so the bus carries nothing for it.

Each message is decoded once (envelope.py) and fed to the tables: topics (topictree.py), tasks
(tasks.py), tools and heartbeats (tools.py), invalid envelopes (diagnostics.py); then handed to
the connected streams whose filter matches (each with a bounded queue that drops, counted, when
its browser is slow) and to the recording. The charts' ring (history.py) is sampled from the
status document every ``history.INTERVAL`` seconds, watched or not: it reads counters, not traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from argentic_edge.bus.reader import BusReader
from argentic_edge.inspector import history
from argentic_edge.inspector.diagnostics import InvalidLog, diagnose
from argentic_edge.inspector.envelope import Envelope, decode
from argentic_edge.inspector.recorder import Recorder
from argentic_edge.inspector.tasks import TaskBook
from argentic_edge.inspector.tools import ToolRegistry
from argentic_edge.inspector.topictree import TopicTable
from argentic_edge.topics import FrameError, TopicFilter, decode_frame

log = logging.getLogger(__name__)

CPU_SHARE = 0.05  # of one core while watched: the bus (C threads) keeps the rest
# seconds the budget is measured over: short, so that a burst of a fraction of a second cannot
# take a whole second's budget at once (over 1 s, the inspector took a quarter of a core during
# a 0.2 s burst and cost the bus half its rate on two cores)
CPU_WINDOW = 0.1
RECEIVE_HIGH_WATER_MARK = 1_000
LEASE = 30.0  # seconds an API read keeps the inspector watching
STREAM_QUEUE = 1_000  # messages queued per event stream before it drops, counted
TICK = 1.0  # seconds between checks whether anyone still watches


@dataclass(eq=False)
class Listener:
    """One event stream: its filter and its bounded queue of (time, topic, payload, envelope)."""

    filter: TopicFilter
    queue: asyncio.Queue[tuple[float, str, bytes, Envelope]] = field(
        default_factory=lambda: asyncio.Queue(STREAM_QUEUE)
    )
    dropped: int = 0

    def offer(self, item: tuple[float, str, bytes, Envelope]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1


@dataclass(frozen=True)
class InspectorStatus:
    """The ``inspector`` section of the status document."""

    watching: bool
    watchers: int
    recording: bool
    messages: int
    topics: int
    tasks: int
    tools: int
    invalid: int
    reader: dict[str, Any] | None


class InspectorService:
    """``status`` is the appliance's status document (for the charts); ``recordings`` the
    directory of the page's recording; ``endpoints`` the bus's local publish and subscribe."""

    name = "inspector"

    def __init__(
        self,
        context: zmq.Context[Any],
        publish_endpoint: str,
        subscribe_endpoint: str,
        topic_encoding: str,
        status: Callable[[], dict[str, Any]],
        recordings: Path,
        *,
        history_interval: float | None = None,
    ) -> None:
        self.context = context
        self.publish_endpoint = publish_endpoint
        self.subscribe_endpoint = subscribe_endpoint
        self.topic_encoding = topic_encoding
        self.read_status = status
        self.recording_path = recordings / "recording.jsonl"
        self.history_interval = history_interval or history.INTERVAL
        self.topics = TopicTable()
        self.tasks = TaskBook()
        self.tools = ToolRegistry()
        self.invalid = InvalidLog()
        self.history = history.History()
        self.messages = 0
        self.recorder: Recorder | None = None
        self._listeners: set[Listener] = set()
        self._streams = 0
        self._lease_until = 0.0
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: BusReader | None = None
        self._reading: asyncio.Task[None] | None = None
        self._ticking: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._ticking = asyncio.create_task(self._tick(), name="argentic-edge-inspector")

    async def stop(self) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
            await asyncio.gather(self._ticking, return_exceptions=True)
            self._ticking = None
        await self._stop_reading()
        if self.recorder is not None:
            self.recorder.stop("the appliance stopped")

    def health(self) -> tuple[bool, str]:
        if self._ticking is None or self._ticking.done():
            return False, "not running"
        return True, "watching the bus" if self.watched() else "idle (nobody watching)"

    def status(self) -> InspectorStatus:
        return InspectorStatus(
            watching=self._reading is not None,
            watchers=self._streams,
            recording=self.recorder is not None and self.recorder.running,
            messages=self.messages,
            topics=len(self.topics.entries),
            tasks=len(self.tasks.tasks),
            tools=len(self.tools.tools),
            invalid=self.invalid.total,
            reader=self.reader_status(),
        )

    def reader_status(self) -> dict[str, Any] | None:
        return self._reader.status() if self._reader is not None else None

    # --- who watches -------------------------------------------------------------------------

    def watched(self) -> bool:
        recording = self.recorder is not None and self.recorder.running
        return self._streams > 0 or recording or time.monotonic() < self._lease_until

    def lease(self) -> None:
        """An API read: watch for the next LEASE seconds, so the next read has data."""
        self._lease_until = time.monotonic() + LEASE
        self._start_reading()

    @contextlib.asynccontextmanager
    async def listen(self, topic_filter: TopicFilter) -> AsyncIterator[Listener]:
        """An event stream's subscription, for as long as the stream is connected."""
        listener = Listener(topic_filter)
        self._listeners.add(listener)
        self._streams += 1
        self._start_reading()
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            self._streams -= 1

    def start_recording(self, topic_filter: TopicFilter) -> Recorder:
        if self.recorder is not None:
            self.recorder.stop()
        self.recorder = Recorder(self.recording_path, topic_filter)
        self._start_reading()
        return self.recorder

    def stop_recording(self) -> Recorder | None:
        if self.recorder is not None:
            self.recorder.stop()
        return self.recorder

    async def _tick(self) -> None:
        """Samples the charts' ring; stops reading once nobody watches."""
        next_sample = 0.0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + self.history_interval
                try:
                    self.history.add(self.read_status(), time.time())
                except Exception:
                    log.exception("inspector: the status document failed; no chart sample")
            if self._reading is not None and not self.watched():
                await self._stop_reading()
            await asyncio.sleep(min(TICK, self.history_interval))

    # --- reading the bus ---------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._reading is not None:
            return
        context = zmq.asyncio.Context.shadow(self.context)
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self.subscribe_endpoint)
        self._socket = socket
        self._reader = BusReader(
            socket,
            self._take,
            name="inspector",
            share=CPU_SHARE,
            window=CPU_WINDOW,
            discard_stale=True,
        )
        self._reading = asyncio.create_task(self._read(self._reader), name="inspector-reader")
        log.info("inspector: watching the bus (someone is looking)")

    async def _read(self, reader: BusReader) -> None:
        try:
            await reader.run()
        except zmq.ZMQError as exc:
            log.error("inspector: stopped reading the bus: %s", exc)

    async def _stop_reading(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
            self._reading = None
            log.info("inspector: nobody is looking; stopped reading the bus")
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _take(self, frame: bytes) -> None:
        now = time.time()
        self.messages += 1
        try:
            topic, payload = decode_frame(frame, self.topic_encoding)
        except FrameError as exc:
            self.invalid.add("(no topic)", f"not a bus frame: {exc}", frame, now)
            return
        self.record(topic, payload, now)

    def record(self, topic: str, payload: bytes, now: float) -> Envelope:
        """Feed one message to every table, stream and the recording."""
        envelope = decode(payload)
        self.topics.add(topic, payload, envelope, now)
        if envelope.problem is not None:
            self.invalid.add(topic, envelope.problem, payload, now)
        else:
            self.tasks.add(envelope, now)
            self.tools.add(topic, envelope, now)
        for listener in self._listeners:
            if listener.filter.matches(topic):
                listener.offer((now, topic, payload, envelope))
        if self.recorder is not None:
            self.recorder.add(topic, payload, now)
        return envelope

    # --- what the API reads --------------------------------------------------------------------

    def diagnoses(self) -> dict[str, Any]:
        return diagnose(self.tools, self.tasks, self.invalid, time.time())
