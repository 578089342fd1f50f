"""Agents and tools seen on the bus, for the status page and the metrics.

Argentic has no registry service: agents announce themselves with heartbeats on
``_ping/<client_id>``, and tools register over messages (``REGISTER_TOOL`` on
``agent/tools/register`` or ``tools/<name>/register``, confirmed by the agent with
``TOOL_REGISTERED`` on ``agent/status/info``, withdrawn with ``UNREGISTER_TOOL``). This service
listens to those topics on the appliance's own bus and keeps a small, bounded table of who was
seen, what they offer, and when.

Cost: every message this service reads is copied through Python, so it subscribes to narrow libzmq
prefixes only: ``_ping/``, ``agent/tools/register``, ``agent/status/info`` and ``tools/``. The role
variant ``agent/<role>/tools/register`` is left out on purpose: a prefix that covers it (``agent/``)
would pull every tool call, result and answer of every agent through this thread. Tools registered
that way still show up as clients through their heartbeats. ``tools/`` does carry the guide's
``tools/<name>/call`` traffic as well; deployments following Argentic's code (``agent/tools/call``)
send nothing else there.

A flood on a watched topic (a buggy heartbeat loop is enough) arrives faster than Python reads:
the socket is read through ``BusReader`` (bus/reader.py) on a small CPU budget, so the registry
samples under load and says so in its status instead of taking the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from argentic_edge.bus.reader import BusReader
from argentic_edge.topics import FrameError, TopicFilter, TopicTree, decode_frame

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ("_ping/", "agent/tools/register", "agent/status/info", "tools/")
MAX_AGENTS = 256
MAX_TOOLS = 512
MAX_NAME = 200  # longer client ids or tool names are treated as malformed
RECEIVE_HIGH_WATER_MARK = 1_000  # frames queued for the registry before the bus drops for it
CPU_SHARE = 0.02  # of one core, 20 ms a second (a few thousand messages): heartbeats and
# registrations are a trickle, and every core the registry takes from a flood is the bus's


class Malformed(ValueError):
    """A message on a watched topic that is not what Argentic sends there."""


@dataclass
class AgentRecord:
    """A client seen on the bus: an agent, a tool process, or anything with a heartbeat."""

    client_id: str
    first_seen: float
    last_seen: float
    heartbeats: int = 0
    role: str = "client"  # "agent" once it confirmed a tool registration

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.client_id,
            "role": self.role,
            "heartbeats": self.heartbeats,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "age": round(now - self.last_seen, 3),
        }


@dataclass
class ToolRecord:
    """A tool by name: who offers it, which agent confirmed it, and under which id."""

    name: str
    last_seen: float
    state: str = "requested"  # requested -> registered -> unregistered
    provider: str | None = None
    agent: str | None = None
    tool_id: str | None = None
    topic: str = ""

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "provider": self.provider,
            "agent": self.agent,
            "tool_id": self.tool_id,
            "topic": self.topic,
            "last_seen": self.last_seen,
            "age": round(now - self.last_seen, 3),
        }


def _bounded_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise Malformed(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def _optional_text(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    return None if value is None else _bounded_text(value, key)


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the payload is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Malformed("the payload is not an Argentic message (a JSON object with a type)")
    return message


def _touch(table: OrderedDict[str, Any], key: str, limit: int) -> bool:
    """Mark ``key`` most recent; evict the least recently seen entries beyond ``limit``."""
    table.move_to_end(key)
    evicted = False
    while len(table) > limit:
        table.popitem(last=False)
        evicted = True
    return evicted


@dataclass
class AgentRegistry:
    """The bounded tables, fed one bus message at a time. Pure: no sockets, no clock of its own."""

    max_agents: int = MAX_AGENTS
    max_tools: int = MAX_TOOLS
    agents: OrderedDict[str, AgentRecord] = field(default_factory=OrderedDict)
    tools: OrderedDict[str, ToolRecord] = field(default_factory=OrderedDict)
    messages: int = 0
    malformed: int = 0
    evicted: int = 0

    def __post_init__(self) -> None:
        handlers: list[tuple[str, Callable[[str, dict[str, Any], float], None]]] = [
            ("_ping/#", self._ping),
            ("agent/tools/register", self._registration),
            ("tools/+/register", self._registration),
            ("agent/status/info", self._confirmation),
        ]
        self._dispatch: TopicTree[Callable[[str, dict[str, Any], float], None]] = TopicTree(
            (TopicFilter(pattern), handler) for pattern, handler in handlers
        )

    def record(self, topic: str, payload: bytes, now: float) -> bool:
        """Take one message; False when it was on a watched prefix but not a topic we read.

        Raises Malformed for a message we read that does not have the expected shape.
        """
        handlers = self._dispatch.match(topic)
        if not handlers:
            return False
        self.messages += 1
        try:
            message = _parse(payload)
            for handler in handlers:
                handler(topic, message, now)
        except Malformed:
            self.malformed += 1
            raise
        return True

    def _agent(self, client_id: str, now: float) -> AgentRecord:
        record = self.agents.get(client_id)
        if record is None:
            record = self.agents[client_id] = AgentRecord(client_id, now, now)
        record.last_seen = now
        self.evicted += _touch(self.agents, client_id, self.max_agents)
        return record

    def _tool(self, name: str, topic: str, now: float) -> ToolRecord:
        record = self.tools.get(name)
        if record is None:
            record = self.tools[name] = ToolRecord(name, now)
        record.last_seen = now
        record.topic = topic
        self.evicted += _touch(self.tools, name, self.max_tools)
        return record

    def _ping(self, topic: str, message: dict[str, Any], now: float) -> None:
        client_id = _bounded_text(topic[len("_ping/") :], "the client id in _ping/<client_id>")
        self._agent(client_id, now).heartbeats += 1

    def _registration(self, topic: str, message: dict[str, Any], now: float) -> None:
        kind = message["type"]
        if kind == "REGISTER_TOOL":
            name = _bounded_text(message.get("tool_name"), "tool_name")
            provider = _optional_text(message, "source")
            tool = self._tool(name, topic, now)
            tool.provider = provider or tool.provider
            tool.state = "requested" if tool.state == "unregistered" else tool.state
        elif kind == "UNREGISTER_TOOL":
            tool_id = _bounded_text(message.get("tool_id"), "tool_id")
            for tool in self.tools.values():
                if tool.tool_id == tool_id:
                    tool.state = "unregistered"
                    tool.last_seen = now
                    break

    def _confirmation(self, topic: str, message: dict[str, Any], now: float) -> None:
        if message["type"] != "TOOL_REGISTERED":
            return
        name = _bounded_text(message.get("tool_name"), "tool_name")
        tool_id = _bounded_text(message.get("tool_id"), "tool_id")
        agent = _optional_text(message, "source")
        tool = self._tool(name, topic, now)
        tool.tool_id, tool.state = tool_id, "registered"
        if agent is not None:
            tool.agent = agent
            self._agent(agent, now).role = "agent"

    def snapshot(self, now: float) -> dict[str, Any]:
        """Most recently seen first."""
        return {
            "agents": [record.to_dict(now) for record in reversed(self.agents.values())],
            "tools": [record.to_dict(now) for record in reversed(self.tools.values())],
            "messages": self.messages,
            "malformed": self.malformed,
            "evicted": self.evicted,
        }


@dataclass(frozen=True)
class AgentsStatus:
    """The ``agents`` section of the status document: the registry's snapshot (most recently
    seen first), what is watched, and how the bus reader keeps up."""

    agents: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    messages: int
    malformed: int
    evicted: int
    subscriptions: list[str]
    reader: dict[str, Any] | None


class AgentsService:
    """Reads the watched topics from the bus in one asyncio task and feeds the registry.

    ``endpoint`` is the bus's local subscribe endpoint, joined on ``context`` (the appliance's
    shared zmq context, so inproc endpoints work); ``topic_encoding`` is messaging's.
    """

    name = "agents"

    def __init__(self, context: zmq.Context[Any], endpoint: str, topic_encoding: str) -> None:
        self.context = context
        self.endpoint = endpoint
        self.topic_encoding = topic_encoding
        self.registry = AgentRegistry()
        self.changed = asyncio.Event()  # set on every message read; waiters clear it
        self._socket: zmq.asyncio.Socket | None = None
        self._reader: BusReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None

    async def start(self) -> None:
        context = zmq.asyncio.Context.shadow(self.context)
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HIGH_WATER_MARK)
        for prefix in SUBSCRIPTIONS:
            socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        socket.connect(self.endpoint)
        self._socket = socket
        self._reader = BusReader(
            socket, self._take, name="agents", share=CPU_SHARE, discard_stale=True
        )
        self._task = asyncio.create_task(self._read(self._reader), name="argentic-edge-agents")

    async def _read(self, reader: BusReader) -> None:
        try:
            await reader.run()
        except asyncio.CancelledError:
            raise
        except zmq.ZMQError as exc:
            self._failure = f"stopped reading the bus: {exc}"
            log.error("agents: %s", self._failure)

    def _take(self, frame: bytes) -> None:
        try:
            topic, payload = decode_frame(frame, self.topic_encoding)
            self.registry.record(topic, payload, time.time())
        except (FrameError, Malformed) as exc:
            if isinstance(exc, FrameError):
                self.registry.malformed += 1
            if self.registry.malformed == 1:
                log.warning(
                    "agents: ignoring malformed messages on watched topics (%s); counting them", exc
                )
        self.changed.set()

    async def wait_until(self, predicate: Callable[[AgentRegistry], bool], timeout: float) -> None:
        """Until ``predicate(registry)`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()  # before the check: a message after it sets it again
                if predicate(self.registry):
                    return
                await self.changed.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def health(self) -> tuple[bool, str]:
        if self._failure is not None:
            return False, self._failure
        if self._task is None or self._task.done():
            return False, "not watching the bus"
        agents, tools = len(self.registry.agents), len(self.registry.tools)
        return True, f"{agents} client(s), {tools} tool(s) seen"

    def status(self) -> AgentsStatus:
        return AgentsStatus(
            **self.registry.snapshot(time.time()),
            subscriptions=list(SUBSCRIPTIONS),
            reader=self._reader.status() if self._reader is not None else None,
        )
