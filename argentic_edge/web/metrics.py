"""The status document in Prometheus' text format (0.0.4), names prefixed ``argentic_edge_``.

The bus and agents sections have shapes this package knows. The uplinks, peers and certificates
sections come from services written elsewhere, so they are read by convention rather than by
schema: numbers in each uplink's status (and in each of its ``routes``) become ``uplink_*``
metrics labelled with the uplink's name,
peers are counted by their ``state``, and every mapping with ``days_left`` is a certificate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "argentic_edge_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric_name(text: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", text).strip("_").lower()
    return name if name and not name[0].isdigit() else f"_{name}"


def _format(value: float) -> str:
    """Whole numbers exactly (counters pass 2**53 only after years), others as Python does."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class Registry:
    """Families in the order first seen, each rendered once with all its samples."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def add(
        self, name: str, kind: str, help_text: str, value: Any, labels: dict[str, str] | None = None
    ) -> None:
        number = _number(value)
        if number is None:
            return
        full = PREFIX + name
        family = self.families.setdefault(full, Family(full, kind, help_text))
        family.samples.append((labels or {}, number))

    def render(self) -> str:
        lines = []
        for family in self.families.values():
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for labels, value in family.samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                shown = _format(value)
                lines.append(
                    f"{family.name}{{{text}}} {shown}" if text else f"{family.name} {shown}"
                )
        return "\n".join(lines) + "\n"


def _node(registry: Registry, document: Mapping[str, Any]) -> None:
    node = document.get("node", {})
    registry.add(
        "info",
        "gauge",
        "Version and node name of this appliance.",
        1,
        {"version": str(node.get("version", "")), "node": str(node.get("name", ""))},
    )
    registry.add(
        "uptime_seconds", "gauge", "Seconds since the appliance started.", node.get("uptime")
    )
    health = document.get("health", {})
    registry.add("up", "gauge", "1 when every enabled service is up.", health.get("ok"))
    for name, up in health.get("services", {}).items():
        registry.add(
            "service_up", "gauge", "1 when the service reports itself up.", up, {"service": name}
        )


def _bus(registry: Registry, bus: Mapping[str, Any]) -> None:
    counters = bus.get("counters") or {}
    for side in ("frontend", "backend"):
        for direction in ("in", "out"):
            labels = {"side": side, "direction": direction}
            registry.add(
                "bus_messages_total",
                "counter",
                "Messages through the bus proxy (frontend: publishers, backend: subscribers).",
                counters.get(side, {}).get(f"messages_{direction}"),
                labels,
            )
            registry.add(
                "bus_bytes_total",
                "counter",
                "Bytes through the bus proxy.",
                counters.get(side, {}).get(f"bytes_{direction}"),
                labels,
            )


def _kind_of(name: str) -> str:
    return "counter" if name.endswith("_total") else "gauge"


READER_COUNTERS = {
    "frames": "Bus messages a Python reader handled.",
    "skipped": "Bus frames a reader read and discarded unhandled after a window over its CPU "
    "budget.",
    "saturated_windows": "Windows in which a bus reader ran out of its CPU budget.",
    "queue_full": "Runs of a full receive queue read back to back (libzmq dropped frames for "
    "the reader beyond its queue; it does not count them).",
    "multipart": "Multipart bus messages discarded whole (Argentic sends one frame).",
    "errors": "Bus messages whose handling failed.",
}


def _reader(registry: Registry, name: str, reader: Any) -> None:
    """bus.reader.BusReader.status() of the reader ``name`` (agents, uplink:<name>)."""
    if not isinstance(reader, Mapping):
        return
    for key, help_text in READER_COUNTERS.items():
        registry.add(
            f"bus_reader_{key}_total", "counter", help_text, reader.get(key), {"reader": name}
        )


def _uplinks(registry: Registry, uplinks: Any) -> None:
    """One set of ``uplink_*`` metrics per entry of the status' ``uplinks`` list, labelled
    ``uplink`` (its name) and ``protocol``; routes add ``topic`` and ``direction``."""
    for uplink in uplinks if isinstance(uplinks, list) else []:
        if isinstance(uplink, Mapping):
            _uplink(registry, uplink)


def _uplink(registry: Registry, uplink: Mapping[str, Any]) -> None:
    labels = {"uplink": str(uplink.get("name", "")), "protocol": str(uplink.get("protocol", ""))}
    _reader(registry, f"uplink:{labels['uplink']}", uplink.get("bus_reader"))
    for key, value in uplink.items():
        if key in ("bus_reader", "enabled"):
            continue
        if isinstance(value, Mapping):
            for sub, item in value.items():
                name = _metric_name(f"uplink_{key}_{sub}")
                registry.add(name, _kind_of(name), f"Uplink {key} {sub}.", item, labels)
        else:
            name = _metric_name(f"uplink_{key}")
            registry.add(name, _kind_of(name), f"Uplink {key}.", value, labels)
    for route in uplink.get("routes") or []:
        if not isinstance(route, Mapping):
            continue
        route_labels = labels | {k: str(route[k]) for k in ("topic", "direction") if k in route}
        for key, value in route.items():
            name = _metric_name(f"uplink_route_{key}")
            registry.add(name, _kind_of(name), f"Uplink route {key}.", value, route_labels)


def _mappings(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from _mappings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mappings(item)


def _peers(registry: Registry, peers: Mapping[str, Any]) -> None:
    counts: dict[str, int] = {}
    for item in _mappings(peers.get("peers", [])):
        if isinstance(item.get("state"), str):
            counts[item["state"]] = counts.get(item["state"], 0) + 1
    for state, count in sorted(counts.items()):
        registry.add("peers", "gauge", "Discovered peers by state.", count, {"state": state})


def _certificates(registry: Registry, certificates: Mapping[str, Any]) -> None:
    for item in _mappings(certificates):
        if "days_left" in item:
            registry.add(
                "certificate_days_left",
                "gauge",
                "Days until the certificate expires.",
                item["days_left"],
                {"name": str(item.get("name", ""))},
            )


def _agents(registry: Registry, agents: Mapping[str, Any]) -> None:
    registry.add(
        "agents_seen",
        "gauge",
        "Clients seen on the bus (heartbeats, registrations).",
        len(agents.get("agents", [])) if "agents" in agents else None,
    )
    registry.add(
        "tools_seen",
        "gauge",
        "Tools seen registering on the bus.",
        len(agents.get("tools", [])) if "tools" in agents else None,
    )
    registry.add(
        "agents_messages_total",
        "counter",
        "Registry messages read from the bus.",
        agents.get("messages"),
    )
    registry.add(
        "agents_malformed_total",
        "counter",
        "Malformed registry messages ignored.",
        agents.get("malformed"),
    )
    _reader(registry, "agents", agents.get("reader"))


def _web(registry: Registry, web: Mapping[str, Any]) -> None:
    connections = web.get("connections") or {}
    registry.add(
        "web_connections", "gauge", "Connections open to the web listener.", connections.get("open")
    )
    registry.add(
        "web_connection_limit",
        "gauge",
        "Most connections the web keeps open (below RLIMIT_NOFILE minus the reserve).",
        connections.get("limit"),
    )
    registry.add(
        "web_connections_refused_total",
        "counter",
        "Connections closed at once because the limit was reached.",
        connections.get("refused"),
    )
    registry.add(
        "web_accept_exhausted_total",
        "counter",
        "Connections the web could not accept for want of descriptors or memory.",
        connections.get("exhausted"),
    )
    requests = web.get("requests") or {}
    registry.add(
        "web_requests_malformed_total",
        "counter",
        "Malformed HTTP requests answered 400.",
        requests.get("malformed"),
    )
    registry.add(
        "web_requests_failed_total",
        "counter",
        "Requests the HTTP server failed to handle outside the application.",
        requests.get("failed"),
    )


def render(document: Mapping[str, Any], warnings_total: int) -> str:
    registry = Registry()
    _node(registry, document)
    _bus(registry, document.get("bus", {}))
    _uplinks(registry, document.get("uplinks"))
    sections = {  # ``bridge`` is the first MQTT uplink again: counted once, under uplinks
        "peers": _peers,
        "certificates": _certificates,
        "agents": _agents,
        "web": _web,
    }
    for name, read in sections.items():
        section = document.get(name)
        if isinstance(section, Mapping) and section.get("enabled", True) is not False:
            read(registry, section)
    registry.add(
        "log_warnings_total",
        "counter",
        "Warnings and errors logged since the start.",
        warnings_total,
    )
    return registry.render()
