"""Home Assistant add-on glue: options, the Supervisor's API, MQTT discovery, LAN addresses.

In add-on mode the Supervisor, not a YAML file, describes the appliance: the user's choices are
in ``/data/options.json``, the Mosquitto add-on's address and credentials come from the
Supervisor's MQTT service, the ingress port from ``/addons/self/info``. This module turns those
into the appliance's ordinary configuration dict (which ``config.py`` validates like any other),
so nothing downstream knows it runs under Home Assistant. The pieces are pure functions plus one
small API client; the composition root decides when to call them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from argentic_edge.storage import atomic_write

if TYPE_CHECKING:  # aiohttp loads only when the Supervisor is asked something
    import aiohttp

_LOGGER = logging.getLogger(__name__)

OPTIONS_PATH = Path("/data/options.json")
# The add-on's own folder (map: addon_config): the advanced layer on top of the options.
EXTRA_CONFIG_PATH = Path("/config/argentic-edge.yaml")
DATA_DIR = "/data"
SSL_DIR = PurePosixPath("/ssl")
# Written once the web server listens; the Dockerfile's HEALTHCHECK curls the URL inside.
HEALTHZ_URL_PATH = Path("/run/argentic-edge/healthz-url")
SUPERVISOR_URL = "http://supervisor"
# Ingress requests reach the add-on from this address only (the Supervisor on the hassio network).
SUPERVISOR_INGRESS_ADDRESS = "172.30.32.2"
DISCOVERY_PREFIX = "homeassistant"


class AddonError(Exception):
    """The add-on's environment is not usable as it is: bad options, Supervisor refusing us."""


class SupervisorError(AddonError):
    """The Supervisor answered something the add-on cannot work with; retrying will not help."""


class SupervisorUnavailable(SupervisorError):
    """The Supervisor could not be reached or failed for now; worth retrying."""


# ---------------------------------------------------------------------------------------------
# Options -> configuration
# ---------------------------------------------------------------------------------------------

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
        raise AddonError(f"{path} does not exist: is this running as a Home Assistant add-on?") from exc
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
        _put(config, ("bridge", "routes"), [_route(index, route) for index, route in enumerate(routes)])
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
        raise AddonError(f"routes[{index}]: expected a mapping with topic and direction, got {route!r}")
    unknown = sorted(set(route) - _ROUTE_KEYS)
    if unknown:
        expected = ", ".join(sorted(_ROUTE_KEYS))
        raise AddonError(f"routes[{index}]: unknown key(s) {', '.join(unknown)}; expected {expected}")
    result = {key: value for key, value in route.items() if value is not None and value != ""}
    if "qos" in result:
        text = str(result["qos"]).lower()
        if text not in _QOS_VALUES:
            raise AddonError(f"routes[{index}].qos: expected 0, 1, 2 or auto, got {result['qos']!r}")
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
    mqtt = result.get("bridge", {}).get("mqtt", {})
    if "broker_address" in mqtt:
        return result
    mqtt = result.setdefault("bridge", {}).setdefault("mqtt", {})
    mqtt["broker_address"] = service["host"]
    mqtt["port"] = int(service["port"])
    for key in ("username", "password"):
        if service.get(key) and key not in mqtt:
            mqtt[key] = service[key]
    if service.get("ssl") and "tls_params" not in mqtt:
        mqtt["tls_params"] = {"cert_reqs": "CERT_REQUIRED"}
    return result


# ---------------------------------------------------------------------------------------------
# Supervisor API
# ---------------------------------------------------------------------------------------------


class SupervisorClient:
    """The few Supervisor API calls the add-on needs, authenticated with SUPERVISOR_TOKEN.

    The API lives at ``http://supervisor`` unless ``SUPERVISOR_API`` says otherwise (as bashio
    honours it), which is how the add-on runs against addon/supervisor_standin.py outside
    Home Assistant.

    Use it as ``async with SupervisorClient() as supervisor:`` or call :meth:`close`. The token
    never appears in logs, exceptions or the repr.
    """

    def __init__(
        self, base_url: str | None = None, token: str | None = None, *, timeout: float = 10.0
    ) -> None:
        base_url = base_url or os.environ.get("SUPERVISOR_API") or SUPERVISOR_URL
        token = token if token is not None else os.environ.get("SUPERVISOR_TOKEN")
        if not token:
            raise SupervisorError(
                "SUPERVISOR_TOKEN is not set: the Supervisor API is only reachable from inside a "
                "Home Assistant add-on (the s6 run script must use with-contenv)"
            )
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SupervisorClient({self._base_url!r})"

    async def __aenter__(self) -> SupervisorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def mqtt_service(self) -> dict[str, Any] | None:
        """The MQTT service (host, port, ssl, username, password, protocol), or None when no
        add-on provides one (yet)."""
        status, body = await self._get("/services/mqtt")
        if status in (400, 404) or (status == 200 and body.get("result") == "error"):
            return None
        data = self._data("/services/mqtt", status, body)
        missing = [key for key in ("host", "port") if key not in data]
        if missing:
            raise SupervisorError(f"Supervisor API /services/mqtt: answer lacks {', '.join(missing)}")
        return data

    async def addon_info(self) -> dict[str, Any]:
        """This add-on's info: ``ingress_port``, ``ingress_entry``, ``ip_address``, ``network``..."""
        status, body = await self._get("/addons/self/info")
        return self._data("/addons/self/info", status, body)

    async def wait_for_mqtt_service(
        self,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        jitter: float = 0.2,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Poll until the MQTT service is provided; None if ``timeout`` seconds pass first.

        At boot the Mosquitto add-on may start after this one, and the Supervisor may be busy:
        both are retried with exponential back-off (doubling from ``initial_delay`` up to
        ``max_delay``, each delay spread by ±``jitter``). A refused token is not retried.
        Cancelling the task stops the wait at once.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delays = backoff_delays(initial_delay, max_delay, jitter)
        attempt = 0
        while True:
            attempt += 1
            try:
                service = await self.mqtt_service()
                reason = "no add-on provides it yet"
            except SupervisorUnavailable as exc:
                service, reason = None, str(exc)
            if service is not None:
                _LOGGER.info("MQTT service from the Supervisor: %s:%s (attempt %d)",
                             service["host"], service["port"], attempt)
                return service
            log = _LOGGER.info if attempt == 1 else _LOGGER.debug
            log("Waiting for the Supervisor's MQTT service (%s); attempt %d", reason, attempt)
            delay = next(delays)
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _LOGGER.warning("No MQTT service after %.0f s: install the Mosquitto broker add-on "
                                    "or set mqtt_host", timeout)
                    return None
                delay = min(delay, remaining)
            await asyncio.sleep(delay)

    async def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        url = f"{self._base_url}{path}"
        try:
            async with self._session.get(url, headers=self._headers) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            reason = f"{exc.__class__.__name__} {exc}".strip()
            raise SupervisorUnavailable(f"Supervisor API {path} unreachable: {reason}") from exc
        if status == 401:
            raise SupervisorError(f"Supervisor API {path} refused the add-on's token (HTTP 401)")
        if status == 403:
            message = body.get("message") if isinstance(body, dict) else None
            hint = "; config.yaml must list it (services: mqtt:want)" if path.startswith("/services/") else ""
            raise SupervisorError(
                f"Supervisor API {path} denied access (HTTP 403): {message or 'forbidden'}{hint}"
            )
        if status >= 500:
            raise SupervisorUnavailable(f"Supervisor API {path} failed (HTTP {status})")
        return status, body if isinstance(body, dict) else {}

    @staticmethod
    def _data(path: str, status: int, body: Mapping[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        if status != 200 or body.get("result") != "ok" or not isinstance(data, dict):
            message = body.get("message") or "no usable answer"
            raise SupervisorError(f"Supervisor API {path}: HTTP {status}, {message}")
        return data


def backoff_delays(initial: float, maximum: float, jitter: float) -> Iterator[float]:
    """Exponential back-off: ``initial`` doubling up to ``maximum``, each spread by ±``jitter``
    (a fraction) so that many clients restarting together do not retry in step."""
    delay = initial
    while True:
        yield min(maximum, delay) * (1.0 + jitter * (2.0 * random.random() - 1.0))
        delay = min(maximum, delay * 2.0)


def network_ports(info: Mapping[str, Any]) -> dict[int, int | None]:
    """The ports the user published on the add-on's Network tab: container port -> host port,
    None where the user (or the default) switched it off.

    With ``host_network`` Docker maps nothing; the app itself must listen on these numbers.
    """
    ports: dict[int, int | None] = {}
    for key, value in (info.get("network") or {}).items():
        number, _, _protocol = str(key).partition("/")
        ports[int(number)] = int(value) if value else None
    return ports


def write_healthz_url(port: int, path: Path = HEALTHZ_URL_PATH) -> Path:
    """Tell the Dockerfile's HEALTHCHECK where /healthz answers: the web listener on ``port``."""
    return atomic_write(path, f"http://127.0.0.1:{port}/healthz\n", mode=0o644)


# ---------------------------------------------------------------------------------------------
# Home Assistant MQTT discovery
# ---------------------------------------------------------------------------------------------

# (state key, component, entity name, component-specific settings)
_ENTITIES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("bus_rate", "sensor", "Bus messages per second",
     {"unit_of_measurement": "msg/s", "state_class": "measurement", "icon": "mdi:swap-horizontal"}),
    ("bridge_connected", "binary_sensor", "MQTT bridge",
     {"device_class": "connectivity", "payload_on": "ON", "payload_off": "OFF",
      "entity_category": "diagnostic"}),
    ("peers_linked", "sensor", "Peers linked",
     {"state_class": "measurement", "icon": "mdi:lan-connect"}),
    ("agents_seen", "sensor", "Agents seen", {"state_class": "measurement", "icon": "mdi:robot"}),
    ("cert_days_left", "sensor", "Certificate expires in",
     {"device_class": "duration", "unit_of_measurement": "d", "entity_category": "diagnostic"}),
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
    origin = {"name": "argentic-edge", "sw_version": version,
              "support_url": "https://github.com/argentic-edge/argentic-edge"}
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
