"""Add-on options to configuration: what the user chose in Home Assistant, as an ordinary config.

In add-on mode the Supervisor, not a YAML file, describes the appliance: the user's choices are
in ``/data/options.json`` and the Mosquitto add-on's address and credentials come from the
Supervisor's MQTT service. These pure functions turn both into the appliance's configuration dict
(which ``config.py`` validates like any other), so nothing downstream knows it runs under Home
Assistant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from argentic_edge.errors import EdgeError

OPTIONS_PATH = Path("/data/options.json")
# The add-on's own folder (map: addon_config): the advanced layer on top of the options.
EXTRA_CONFIG_PATH = Path("/config/argentic-edge.yaml")
DATA_DIR = "/data"
SSL_DIR = PurePosixPath("/ssl")


class AddonError(EdgeError):
    """The add-on's environment is not usable as it is: bad options, Supervisor refusing us."""


# Options that map one-to-one onto a configuration key.
_PLAIN_OPTIONS: dict[str, tuple[str, ...]] = {
    "node_name": ("node_name",),
    "log_level": ("log_level",),
    "bridge_enabled": ("bridge", "enabled"),
    "ha_discovery": ("bridge", "ha_discovery"),
    "mqtt_host": ("bridge", "mqtt", "broker_address"),
    "mqtt_port": ("bridge", "mqtt", "port"),
    "mqtt_username": ("bridge", "mqtt", "username"),
    "mqtt_password": ("bridge", "mqtt", "password"),
    "mqtt_client_id": ("bridge", "mqtt", "client_id"),
    "discovery_enabled": ("discovery", "enabled"),
    "federation_trust": ("discovery", "federation", "trust"),
    "web_password": ("web", "password"),
    "api_token": ("web", "api_token"),
}
# Options naming a file under /ssl.
_SSL_OPTIONS: dict[str, tuple[str, ...]] = {
    "certfile": ("certificates", "certfile"),
    "keyfile": ("certificates", "keyfile"),
}
_SPECIAL_OPTIONS = frozenset({"mqtt_tls", "mqtt_ca_certs", "routes", "trusted_peers"})
KNOWN_OPTIONS = frozenset(_PLAIN_OPTIONS) | frozenset(_SSL_OPTIONS) | _SPECIAL_OPTIONS

_ROUTE_KEYS = frozenset({"topic", "direction", "qos", "retain", "local_prefix", "remote_prefix"})
_QOS_VALUES: dict[str, int | str] = {"0": 0, "1": 1, "2": 2, "auto": "auto"}
_RETAIN_VALUES: dict[str, bool | str] = {"true": True, "false": False, "auto": "auto"}


def read_options(path: Path = OPTIONS_PATH) -> dict[str, Any]:
    """The options the Supervisor wrote for this add-on, as a dict."""
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AddonError(
            f"{path} does not exist: is this running as a Home Assistant add-on?"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AddonError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(options, dict):
        raise AddonError(f"{path} must hold a JSON object, found {type(options).__name__}")
    return options


def options_to_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """Map the add-on options onto the appliance's configuration format.

    Only options the user set appear in the result, so the appliance's defaults apply to the
    rest: an absent, ``null`` or empty-string option sets nothing, and neither do the empty
    lists ``routes: []`` (the built-in routes) and ``trusted_peers: []``. File options are
    relative to /ssl unless absolute. A CA file turns TLS on by itself; TLS always verifies the
    broker (``CERT_REQUIRED``), against ``ca_certs`` or, without it, the system's CA store.
    """
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise AddonError(
            f"unknown add-on option(s): {', '.join(unknown)}; "
            f"known options: {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    given = {key: value for key, value in options.items() if value not in (None, "", [])}
    config: dict[str, Any] = {"data_dir": DATA_DIR, "web": {"ingress": True}}
    for option, path in _PLAIN_OPTIONS.items():
        if option in given:
            _put(config, path, given[option])
    for option, path in _SSL_OPTIONS.items():
        if option in given:
            _put(config, path, ssl_path(given[option]))
    if given.get("mqtt_tls") or "mqtt_ca_certs" in given:
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
        if "mqtt_ca_certs" in given:
            tls["ca_certs"] = ssl_path(given["mqtt_ca_certs"])
        _put(config, ("bridge", "mqtt", "tls_params"), tls)
    if "routes" in given:
        routes = _list_option(given, "routes")
        _put(
            config,
            ("bridge", "routes"),
            [_route(index, route) for index, route in enumerate(routes)],
        )
    if "trusted_peers" in given:
        peers = _list_option(given, "trusted_peers")
        if not all(isinstance(peer, str) and peer for peer in peers):
            raise AddonError(f"trusted_peers: expected node IDs or public keys, got {peers!r}")
        _put(config, ("discovery", "federation", "trusted_peers"), peers)
    return config


def ssl_path(name: str) -> str:
    """A file option as an absolute path: relative names live in the /ssl share."""
    path = PurePosixPath(name)
    return str(path if path.is_absolute() else SSL_DIR / path)


def _route(index: int, route: Any) -> dict[str, Any]:
    """One route option as a configuration route; ``qos`` and ``retain`` arrive as strings."""
    if not isinstance(route, Mapping):
        raise AddonError(
            f"routes[{index}]: expected a mapping with topic and direction, got {route!r}"
        )
    unknown = sorted(set(route) - _ROUTE_KEYS)
    if unknown:
        expected = ", ".join(sorted(_ROUTE_KEYS))
        raise AddonError(
            f"routes[{index}]: unknown key(s) {', '.join(unknown)}; expected {expected}"
        )
    result = {key: value for key, value in route.items() if value is not None and value != ""}
    if "qos" in result:
        text = str(result["qos"]).lower()
        if text not in _QOS_VALUES:
            raise AddonError(
                f"routes[{index}].qos: expected 0, 1, 2 or auto, got {result['qos']!r}"
            )
        result["qos"] = _QOS_VALUES[text]
    if "retain" in result:
        text = str(result["retain"]).lower()
        if text not in _RETAIN_VALUES:
            got = route["retain"]
            raise AddonError(f"routes[{index}].retain: expected true, false or auto, got {got!r}")
        result["retain"] = _RETAIN_VALUES[text]
    return result


def _list_option(options: Mapping[str, Any], name: str) -> list[Any]:
    value = options[name]
    if not isinstance(value, list):
        raise AddonError(f"{name}: expected a list, got {type(value).__name__}")
    return list(value)


def _put(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def merge_config(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (from the options) with everything ``extra`` (the advanced YAML file) adds.

    The options UI is what most users touch, so what it sets wins; the YAML file is the advanced
    layer that adds keys the options do not have. Mappings merge key by key at every depth; any
    other value (a string, a number, a list such as ``routes``) is taken whole from ``base``
    when ``base`` has it. Neither argument is modified.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif isinstance(merged[key], dict) and isinstance(value, Mapping):
            merged[key] = merge_config(merged[key], value)
    return merged


def shadowed_keys(base: Mapping[str, Any], extra: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths that ``extra`` sets to another value than ``base``: the ones the options win.

    The app logs them, so a user who edits the YAML file sees why a setting has no effect.
    """
    shadowed = []
    for key, value in extra.items():
        if key not in base:
            continue
        path = f"{prefix}{key}"
        if isinstance(base[key], Mapping) and isinstance(value, Mapping):
            shadowed.extend(shadowed_keys(base[key], value, f"{path}."))
        elif base[key] != value:
            shadowed.append(path)
    return shadowed


def apply_supervisor_mqtt(config: Mapping[str, Any], service: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the Supervisor's MQTT service as the uplink, unless the user chose a broker.

    User-entered broker settings always win: with ``bridge.mqtt.broker_address`` set, the
    service is ignored entirely (its credentials belong to another broker). Without it, the
    service fills host, port and credentials, keeping a user name/password the user typed
    (a dedicated Mosquitto login). ``ssl: true`` verifies the broker (``CERT_REQUIRED``)
    against the system's CA store. The service's ``protocol`` is not used: the bridge
    negotiates MQTT 5 where the broker has it. ``config`` is not modified.
    """
    result = copy.deepcopy(dict(config))
    bridge = result.get("bridge") or {}
    mqtt = bridge.get("mqtt", {}) if isinstance(bridge, Mapping) else None
    if not isinstance(mqtt, Mapping) or "broker_address" in mqtt:
        return result  # a user's broker, or a shape parse_config refuses with its key path
    mqtt = dict(mqtt)
    result["bridge"] = {**bridge, "mqtt": mqtt}
    mqtt["broker_address"] = service["host"]
    mqtt["port"] = int(service["port"])
    for key in ("username", "password"):
        if service.get(key) and key not in mqtt:
            mqtt[key] = service[key]
    if service.get("ssl") and "tls_params" not in mqtt:
        mqtt["tls_params"] = {"cert_reqs": "CERT_REQUIRED"}
    return result
