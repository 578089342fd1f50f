"""The last hour of rates for the Overview's charts: a bounded ring of counter samples.

Every ``INTERVAL`` seconds the inspector samples the appliance's status document (the bus
proxy's counters, each uplink's route counters and drops) and keeps ``SAMPLES`` of them; rates are
the differences between neighbours. Reading counters costs one status document per interval and
no bus traffic, so the ring fills whether or not anyone watches.

Uplinks are read from the status document's ``uplinks`` (a list of uplink sections, or a mapping
by name) when present, else from ``bridge`` (the single MQTT uplink).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

INTERVAL = 10.0
SAMPLES = 360  # an hour at INTERVAL


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _dropped(counters: Any) -> float:
    dropped = counters.get("dropped") if isinstance(counters, dict) else None
    if isinstance(dropped, dict):
        return sum(_number(v) for v in dropped.values())
    return _number(dropped)


def uplink_sections(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Uplink name -> its status section, from ``uplinks`` when present, else ``bridge``."""
    uplinks = document.get("uplinks")
    if isinstance(uplinks, dict):
        sections = uplinks.get("uplinks", uplinks)
        if isinstance(sections, dict):
            return {str(k): v for k, v in sections.items() if isinstance(v, dict)}
        uplinks = sections
    if isinstance(uplinks, list):
        return {
            str(item.get("name") or item.get("protocol") or index): item
            for index, item in enumerate(uplinks)
            if isinstance(item, dict)
        }
    bridge = document.get("bridge")
    if isinstance(bridge, dict) and bridge.get("enabled", True) is not False:
        return {"mqtt": bridge}
    return {}


def uplink_counters(section: dict[str, Any]) -> dict[str, float]:
    """Messages to and from the uplink and drops, summed over its routes and its buffer."""
    sent = received = dropped = 0.0
    for route in section.get("routes") or []:
        if isinstance(route, dict):
            out, into = route.get("out") or {}, route.get("in") or {}
            sent += _number(out.get("messages")) if isinstance(out, dict) else 0.0
            received += _number(into.get("messages")) if isinstance(into, dict) else 0.0
            dropped += _dropped(out) + _dropped(into)
    buffer = section.get("buffer")
    if isinstance(buffer, dict):
        dropped += _number(buffer.get("dropped_oldest"))
    return {"to": sent, "from": received, "drops": dropped}


def sample(document: dict[str, Any], now: float) -> dict[str, Any]:
    """One sample of cumulative counters out of a status document."""
    bus = document.get("bus") if isinstance(document.get("bus"), dict) else {}
    counters = bus.get("counters") if isinstance(bus, dict) else None
    counters = counters if isinstance(counters, dict) else {}
    frontend, backend = counters.get("frontend") or {}, counters.get("backend") or {}
    return {
        "time": now,
        "bus_in": _number(frontend.get("messages_in")),
        "bus_out": _number(backend.get("messages_out")),
        "uplinks": {
            name: uplink_counters(section) for name, section in uplink_sections(document).items()
        },
    }


def _rate(after: float, before: float, seconds: float) -> float:
    return round(max(0.0, after - before) / seconds, 3) if seconds > 0 else 0.0


@dataclass
class History:
    """The ring of samples; ``rates()`` is what the charts draw."""

    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SAMPLES + 1))

    def add(self, document: dict[str, Any], now: float) -> None:
        self.samples.append(sample(document, now))

    def rates(self) -> list[dict[str, Any]]:
        points = []
        items = list(self.samples)
        for before, after in itertools.pairwise(items):
            seconds = after["time"] - before["time"]
            uplinks = {}
            drops = 0.0
            for name, now_counts in after["uplinks"].items():
                then = before["uplinks"].get(name, now_counts)
                uplinks[name] = {
                    "to": _rate(now_counts["to"], then["to"], seconds),
                    "from": _rate(now_counts["from"], then["from"], seconds),
                }
                drops += _rate(now_counts["drops"], then["drops"], seconds)
            points.append(
                {
                    "time": after["time"],
                    "bus_in": _rate(after["bus_in"], before["bus_in"], seconds),
                    "bus_out": _rate(after["bus_out"], before["bus_out"], seconds),
                    "drops": round(drops, 3),
                    "uplinks": uplinks,
                }
            )
        return points
