"""The tool registry as the bus shows it: what each tool declared (Argentic 0.16's ``ToolSpec``
when present), who registered it, whether an agent confirmed it, duplicates and stale entries;
and the heartbeats of every client, to tell which ones stopped.

Argentic's registration: the tool publishes ``REGISTER_TOOL`` (``tool_name``, ``tool_manual``,
``tool_api`` and, from 0.16, ``tool_spec``), the agent's tool manager answers
``TOOL_REGISTERED`` (``tool_id``, ``tool_name``) or ``TOOL_REGISTRATION_ERROR``;
``UNREGISTER_TOOL``/``TOOL_UNREGISTERED`` withdraw it. Clients send heartbeats on
``_ping/<client_id>``.

Caps: ``MAX_TOOLS`` tools and ``MAX_CLIENTS`` clients, least recently seen forgotten first;
``MAX_PROVIDERS`` registrations remembered per tool name.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from argentic_edge.inspector.envelope import Envelope

MAX_TOOLS = 512
MAX_CLIENTS = 256
MAX_PROVIDERS = 8
MAX_TEXT = 2_000  # characters of a tool's description kept
HEARTBEAT_INTERVALS = 20  # recent intervals kept per client to learn its rhythm
STOPPED_AFTER_BEATS = 3.0  # silent for this many of its usual intervals: stopped
MIN_SILENCE = 10.0  # seconds, whatever the rhythm: a client is never "stopped" sooner
SPEC_FIELDS = ("namespace", "title", "version", "tags", "output_schema")


def _cut(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _spec(message: dict[str, Any]) -> dict[str, Any]:
    """The declared interface: the structured ``tool_spec`` when sent, else the legacy fields."""
    spec = message.get("tool_spec")
    if isinstance(spec, dict):
        declared = spec.get("safety")
        safety: dict[str, Any] = declared if isinstance(declared, dict) else {}
        shown: dict[str, Any] = {
            "spec": "tool_spec",
            "description": _cut(spec.get("description")),
            "input_schema": spec.get("input_schema"),
            "safety": {key: bool(value) for key, value in safety.items()},
            "dangerous": bool(safety.get("dangerous")),
            "requires_approval": bool(safety.get("requires_approval")),
        }
        shown.update({key: spec[key] for key in SPEC_FIELDS if spec.get(key) is not None})
        return shown
    return {
        "spec": "legacy",
        "description": _cut(message.get("tool_manual")),
        "input_schema": message.get("tool_api"),
        "dangerous": False,
        "requires_approval": False,
    }


@dataclass(slots=True)
class Registration:
    provider: str | None
    requested: float
    topic: str


@dataclass(slots=True)
class ToolEntry:
    name: str
    last_seen: float
    state: str = "requested"  # requested | registered | refused | unregistered
    registrations: list[Registration] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    tool_ids: list[str] = field(default_factory=list)
    agent: str | None = None
    confirmed: float | None = None
    error: str | None = None

    @property
    def providers(self) -> list[str]:
        return sorted({r.provider for r in self.registrations if r.provider is not None})

    @property
    def requested(self) -> float | None:
        return self.registrations[-1].requested if self.registrations else None


@dataclass(slots=True)
class ClientEntry:
    client_id: str
    first_seen: float
    last_seen: float
    heartbeats: int = 0
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=HEARTBEAT_INTERVALS))

    def usual_interval(self) -> float | None:
        if not self.intervals:
            return None
        ordered = sorted(self.intervals)
        return ordered[len(ordered) // 2]

    def stopped(self, now: float) -> bool:
        usual = self.usual_interval()
        if usual is None:
            return False
        return now - self.last_seen > max(MIN_SILENCE, STOPPED_AFTER_BEATS * usual)

    def to_dict(self, now: float) -> dict[str, Any]:
        usual = self.usual_interval()
        return {
            "id": self.client_id,
            "heartbeats": self.heartbeats,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "age": round(now - self.last_seen, 3),
            "interval": None if usual is None else round(usual, 3),
            "stopped": self.stopped(now),
        }


def _touch(table: OrderedDict[str, Any], key: str, limit: int) -> None:
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


@dataclass
class ToolRegistry:
    """Tools by name and clients by id, fed one decoded message at a time. Pure."""

    tools: OrderedDict[str, ToolEntry] = field(default_factory=OrderedDict)
    clients: OrderedDict[str, ClientEntry] = field(default_factory=OrderedDict)

    def add(self, topic: str, envelope: Envelope, now: float) -> None:
        if topic.startswith("_ping/") and len(topic) > len("_ping/"):
            self._heartbeat(topic[len("_ping/") :][:200], now)
        message = envelope.message
        if message is None:
            return
        kind = envelope.kind
        if kind == "REGISTER_TOOL":
            name = envelope.tool_name or _name_of_spec(message)
            if name is not None:
                self._register(name, envelope.source, topic, message, now)
        elif kind in ("TOOL_REGISTERED", "TOOL_REGISTRATION_ERROR") and envelope.tool_name:
            tool = self._tool(envelope.tool_name, now)
            if kind == "TOOL_REGISTERED":
                tool.state, tool.confirmed, tool.agent = "registered", now, envelope.source
                if envelope.tool_id and envelope.tool_id not in tool.tool_ids:
                    tool.tool_ids.append(envelope.tool_id)
            else:
                tool.state, tool.error = "refused", _cut(message.get("error"))
        elif kind in ("UNREGISTER_TOOL", "TOOL_UNREGISTERED") and envelope.tool_id:
            for tool in self.tools.values():
                if envelope.tool_id in tool.tool_ids:
                    tool.state, tool.last_seen = "unregistered", now

    def _heartbeat(self, client_id: str, now: float) -> None:
        client = self.clients.get(client_id)
        if client is None:
            client = self.clients[client_id] = ClientEntry(client_id, now, now)
        else:
            client.intervals.append(now - client.last_seen)
        client.last_seen = now
        client.heartbeats += 1
        _touch(self.clients, client_id, MAX_CLIENTS)

    def _tool(self, name: str, now: float) -> ToolEntry:
        tool = self.tools.get(name)
        if tool is None:
            tool = self.tools[name] = ToolEntry(name, now)
        tool.last_seen = now
        _touch(self.tools, name, MAX_TOOLS)
        return tool

    def _register(
        self, name: str, provider: str | None, topic: str, message: dict[str, Any], now: float
    ) -> None:
        tool = self._tool(name, now)
        tool.registrations.append(Registration(provider, now, topic))
        del tool.registrations[:-MAX_PROVIDERS]
        tool.spec = _spec(message)
        if tool.state != "registered":
            tool.state = "requested"

    def stale(self, tool: ToolEntry, now: float) -> str | None:
        """Why the entry is stale: withdrawn, or every provider's heartbeats stopped."""
        if tool.state == "unregistered":
            return "unregistered"
        beating = [self.clients[p] for p in tool.providers if p in self.clients]
        if beating and all(client.stopped(now) for client in beating):
            return "its provider's heartbeats stopped"
        return None

    def tool_row(self, tool: ToolEntry, now: float) -> dict[str, Any]:
        duplicate = len(tool.providers) > 1 or len(tool.tool_ids) > 1
        return {
            "name": tool.name,
            "state": tool.state,
            "providers": tool.providers,
            "registrations": len(tool.registrations),
            "requested": tool.requested,
            "confirmed": tool.confirmed,
            "agent": tool.agent,
            "tool_ids": tool.tool_ids,
            "error": tool.error,
            "duplicate": duplicate,
            "stale": self.stale(tool, now),
            "last_seen": tool.last_seen,
            "age": round(now - tool.last_seen, 3),
            **tool.spec,
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "tools": [self.tool_row(tool, now) for tool in sorted(self.tools.values(), key=_name)],
            "clients": [client.to_dict(now) for client in reversed(self.clients.values())],
            "max_tools": MAX_TOOLS,
            "max_clients": MAX_CLIENTS,
        }


def _name(tool: ToolEntry) -> str:
    return tool.name


def _name_of_spec(message: dict[str, Any]) -> str | None:
    spec = message.get("tool_spec")
    name = spec.get("name") if isinstance(spec, dict) else None
    return name[:200] if isinstance(name, str) and name else None
