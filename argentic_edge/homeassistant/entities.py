"""Home Assistant MQTT discovery messages: the appliance as a device with sensors, and its removal.

Pure builders of (topic, payload, retain) triples; the discovery service publishes them.
Identifiers, unique ids, default entity ids and topics come from the stable node id (the one
derived from the node's CURVE key, federation/identity.py), never from the display name: a
rename changes the device's name in Home Assistant and nothing else. Before this scheme the
topics and ids were built from ``node_name``; :func:`legacy_removal_messages` clears those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
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
RECONNECT = "reconnect_uplinks"  # the button's key, and the payload it sends when pressed
ENTITY_ID_DIGITS = 8  # of the node id in default entity ids: sensor.argentic_edge_1a2b3c4d_...


def command_topic(node_id: str) -> str:
    """Where Home Assistant's buttons publish (the bridge listens there)."""
    return f"argentic/edge/{_discovery_node(node_id)}/command"


def state_topic(node_id: str) -> str:
    return f"argentic/edge/{_discovery_node(node_id)}/state"


def discovery_messages(
    node_id: str,
    node_name: str,
    version: str,
    status_topic: str,
    prefix: str = DISCOVERY_PREFIX,
    configuration_url: str | None = None,
    uplinks: Sequence[str] = (),
) -> list[tuple[str, bytes, bool]]:
    """Retained MQTT discovery configs (topic, JSON payload, retain) for the appliance.

    One device (the appliance) with one entity per :data:`STATE_KEYS` entry and one
    connectivity sensor per uplink named in ``uplinks``, reading their values from the JSON
    object on :func:`state_topic` (see :func:`state_payload`), and a "Reconnect uplinks" button
    publishing to :func:`command_topic`; all available while ``status_topic`` holds ``online``.
    ``configuration_url`` is the link Home Assistant shows on the device.
    """
    object_node = _discovery_node(node_id)
    device: dict[str, Any] = {
        "identifiers": [f"argentic_edge_{object_node}"],
        "name": node_name,
        "manufacturer": "Argentic",
        "model": "argentic-edge",
        "sw_version": version,
    }
    if configuration_url:
        device["configuration_url"] = configuration_url
    common = {
        "availability_topic": status_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {
            "name": "argentic-edge",
            "sw_version": version,
            "support_url": "https://github.com/argentic-edge/argentic-edge",
        },
    }
    reading = {"state_topic": state_topic(node_id)}
    entities = [
        (
            key,
            component,
            name,
            {**reading, "value_template": f"{{{{ value_json.{key} }}}}", **extra},
        )
        for key, component, name, extra in (*_ENTITIES, *map(_uplink_entity, uplinks))
    ]
    entities.append(
        (
            RECONNECT,
            "button",
            "Reconnect uplinks",
            {
                "command_topic": command_topic(node_id),
                "payload_press": RECONNECT,
                "icon": "mdi:restart",
                "entity_category": "config",
            },
        )
    )
    short = object_node[:ENTITY_ID_DIGITS].lower()
    messages = []
    for key, component, name, settings in entities:
        payload = {
            "name": name,
            "unique_id": f"argentic_edge_{object_node}_{key}",
            "default_entity_id": f"{component}.argentic_edge_{short}_{_object_id(key)}",
            **common,
            **settings,
        }
        topic = _discovery_topic(prefix, component, object_node, key)
        messages.append((topic, json.dumps(payload, sort_keys=True).encode(), True))
    return messages


def removal_messages(
    node_id: str, prefix: str = DISCOVERY_PREFIX, uplinks: Sequence[str] = ()
) -> list[tuple[str, bytes, bool]]:
    """Empty retained payloads on every discovery topic and on the state topic: Home Assistant
    removes the device, and the broker forgets the last state."""
    messages = discovery_messages(node_id, "", "", "", prefix, uplinks=uplinks)
    topics = [topic for topic, _payload, _retain in messages]
    return [(topic, b"", True) for topic in [*topics, state_topic(node_id)]]


def uplink_removal_messages(
    node_id: str, uplinks: Sequence[str], prefix: str = DISCOVERY_PREFIX
) -> list[tuple[str, bytes, bool]]:
    """Empty retained configs for the sensors of uplinks that are gone from the configuration."""
    object_node = _discovery_node(node_id)
    return [
        (_discovery_topic(prefix, component, object_node, key), b"", True)
        for key, component, _name, _settings in map(_uplink_entity, uplinks)
    ]


def _uplink_entity(name: str) -> tuple[str, str, str, dict[str, Any]]:
    """An uplink's connectivity sensor, keyed by its name (names are stable and unique)."""
    return (
        f"uplink_{_discovery_node(name)}",
        "binary_sensor",
        f"Uplink {name}",
        {
            "value_template": f"{{{{ value_json.uplinks[{json.dumps(name)}] }}}}",
            "device_class": "connectivity",
            "payload_on": "ON",
            "payload_off": "OFF",
            "entity_category": "diagnostic",
        },
    )


def _object_id(key: str) -> str:
    """Entity ids take lower case letters, digits and ``_`` only (an uplink may be ``Cloud-1``)."""
    return re.sub(r"[^a-z0-9_]", "_", key.lower())


def legacy_removal_messages(
    node_name: str, prefix: str = DISCOVERY_PREFIX
) -> list[tuple[str, bytes, bool]]:
    """The same for what versions before the stable id announced under ``node_name``: the
    five sensors' configs and the state topic, all built from the name."""
    object_node = _discovery_node(node_name)
    topics = [
        _discovery_topic(prefix, component, object_node, key)
        for key, component, _name, _settings in _ENTITIES
    ]
    return [(topic, b"", True) for topic in [*topics, state_topic(node_name)]]


def state_payload(
    *,
    bus_rate: float,
    bridge_connected: bool,
    peers_linked: int,
    agents_seen: int,
    cert_days_left: int | None,
    uplinks: Mapping[str, bool] | None = None,
) -> bytes:
    """The JSON the discovered entities read. ``cert_days_left=None`` (no certificate) renders
    as ``None``, which Home Assistant shows as unknown; ``uplinks`` is connected or not by
    uplink name."""
    state = {
        "bus_rate": round(bus_rate, 1),
        "bridge_connected": "ON" if bridge_connected else "OFF",
        "peers_linked": peers_linked,
        "agents_seen": agents_seen,
        "cert_days_left": cert_days_left,
        "uplinks": {name: "ON" if up else "OFF" for name, up in (uplinks or {}).items()},
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
