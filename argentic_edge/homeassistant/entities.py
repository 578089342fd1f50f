"""Home Assistant MQTT discovery messages: the appliance as a device with sensors, and its removal.

Pure builders of (topic, payload, retain) triples; the discovery service publishes them.
Identifiers come from the stable node id, never from the display name.
"""

from __future__ import annotations

import json
import re
from typing import Any

DISCOVERY_PREFIX = "homeassistant"

# (state key, component, entity name, component-specific settings)
_ENTITIES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (
        "bus_rate",
        "sensor",
        "Bus messages per second",
        {
            "unit_of_measurement": "msg/s",
            "state_class": "measurement",
            "icon": "mdi:swap-horizontal",
        },
    ),
    (
        "bridge_connected",
        "binary_sensor",
        "MQTT bridge",
        {
            "device_class": "connectivity",
            "payload_on": "ON",
            "payload_off": "OFF",
            "entity_category": "diagnostic",
        },
    ),
    (
        "peers_linked",
        "sensor",
        "Peers linked",
        {"state_class": "measurement", "icon": "mdi:lan-connect"},
    ),
    ("agents_seen", "sensor", "Agents seen", {"state_class": "measurement", "icon": "mdi:robot"}),
    (
        "cert_days_left",
        "sensor",
        "Certificate expires in",
        {"device_class": "duration", "unit_of_measurement": "d", "entity_category": "diagnostic"},
    ),
)
STATE_KEYS = tuple(entity[0] for entity in _ENTITIES)


def discovery_messages(
    node_id: str,
    node_name: str,
    version: str,
    status_topic: str,
    state_topic: str,
    prefix: str = DISCOVERY_PREFIX,
) -> list[tuple[str, bytes, bool]]:
    """Retained MQTT discovery configs (topic, JSON payload, retain) for the appliance.

    One device (the appliance) with one entity per :data:`STATE_KEYS` entry; every entity reads
    its value from the JSON object on ``state_topic`` (see :func:`state_payload`) and is
    available while ``status_topic`` holds ``online``.
    """
    object_node = _discovery_node(node_id)
    device = {
        "identifiers": [f"argentic_edge_{object_node}"],
        "name": node_name,
        "manufacturer": "Argentic",
        "model": "argentic-edge",
        "sw_version": version,
    }
    origin = {
        "name": "argentic-edge",
        "sw_version": version,
        "support_url": "https://github.com/argentic-edge/argentic-edge",
    }
    messages = []
    for key, component, name, settings in _ENTITIES:
        payload = {
            "name": name,
            "unique_id": f"argentic_edge_{object_node}_{key}",
            "state_topic": state_topic,
            "value_template": f"{{{{ value_json.{key} }}}}",
            "availability_topic": status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "origin": origin,
            **settings,
        }
        topic = _discovery_topic(prefix, component, object_node, key)
        messages.append((topic, json.dumps(payload, sort_keys=True).encode(), True))
    return messages


def removal_messages(node_id: str, prefix: str = DISCOVERY_PREFIX) -> list[tuple[str, bytes, bool]]:
    """Empty retained payloads on every discovery topic: Home Assistant removes the device."""
    object_node = _discovery_node(node_id)
    return [
        (_discovery_topic(prefix, component, object_node, key), b"", True)
        for key, component, _name, _settings in _ENTITIES
    ]


def state_payload(
    *,
    bus_rate: float,
    bridge_connected: bool,
    peers_linked: int,
    agents_seen: int,
    cert_days_left: int | None,
) -> bytes:
    """The JSON the discovered entities read. ``cert_days_left=None`` (no certificate) renders
    as ``None``, which Home Assistant shows as unknown."""
    state = {
        "bus_rate": round(bus_rate, 1),
        "bridge_connected": "ON" if bridge_connected else "OFF",
        "peers_linked": peers_linked,
        "agents_seen": agents_seen,
        "cert_days_left": cert_days_left,
    }
    return json.dumps(state, sort_keys=True).encode()


def _discovery_node(node_id: str) -> str:
    """Discovery topic levels allow only [a-zA-Z0-9_-]; anything else becomes ``_``."""
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", node_id)
    if not cleaned:
        raise ValueError("node_id must not be empty")
    return cleaned


def _discovery_topic(prefix: str, component: str, object_node: str, key: str) -> str:
    return f"{prefix}/{component}/{object_node}/{key}/config"
