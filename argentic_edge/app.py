"""Edge: the composition root that builds every service from one EdgeConfig.

It is the only module that knows all services. Each builder below hands its service exactly what
it uses (a config section, the bus endpoints, the zmq context, a callable into a sibling), so no
service knows the Edge or looks another up by name. It starts them in dependency order, stops them
in reverse, answers "is everything up?" for /healthz, gathers one status document for the page and
the API, and applies a new configuration by restarting only the services whose section changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import zmq

from argentic_edge import __version__
from argentic_edge.bus.connect import EVERY_ADDRESS, BusConnect, bus_connect
from argentic_edge.bus.proxy import Bus
from argentic_edge.config import ConfigError, EdgeConfig, UplinkConfig, uplink_client_id
from argentic_edge.discovery.interfaces import local_addresses
from argentic_edge.errors import EdgeError
from argentic_edge.storage import (
    certs_dir,
    federation_dir,
    homeassistant_state_path,
    inspector_dir,
    sweep_stale_temp_files,
)

if TYPE_CHECKING:
    from argentic_edge.bridge.link import Link, LinkCallbacks
    from argentic_edge.bridge.service import Uplink
    from argentic_edge.bus.federated import FederatedBus
    from argentic_edge.certs.service import CertManager
    from argentic_edge.federation.identity import CurveKeys
    from argentic_edge.federation.peers import PeersService
    from argentic_edge.homeassistant.discovery import HomeAssistantDiscovery
    from argentic_edge.inspector.watcher import InspectorService
    from argentic_edge.web.service import WebService

log = logging.getLogger(__name__)
LAN_ADDRESSES_FOR = 5.0  # seconds the bus card's list of this host's LAN addresses is reused

UPLINK_PREFIX = "uplink:"  # service names: uplink:<name>


class Service(Protocol):
    """What the composition root needs from a service."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> tuple[bool, str]:
        """(up, reason): reason says why not, in words for /healthz and the status page."""
        ...

    def status(self) -> Any:
        """The service's status: a dataclass (or, until every service has one, a dict) whose
        JSON form is the service's section of the status document."""
        ...


def federation_wanted(config: EdgeConfig) -> bool:
    """Federation runs on our own embedded proxies only; an external proxy is not ours to split."""
    bus = config.messaging
    return (
        config.discovery.enabled
        and config.discovery.federation.enabled
        and bus.start_proxy
        and bus.proxy_mode == "embedded"
    )


class BusService:
    """The bus as an Edge service: the plain Bus, or the FederatedBus when federation is on
    (both have the same face), plus health and status in the common shape."""

    name = "bus"

    def __init__(self, bus: Bus | FederatedBus) -> None:
        self.bus = bus
        self._lan: tuple[float, list[str]] = (-LAN_ADDRESSES_FOR, [])

    async def start(self) -> None:
        await self.bus.start()
        if self.bus.mode == self.bus.local_mode and self.bus.config.broker_address in EVERY_ADDRESS:
            connect = self.connect()  # the bus logs 0.0.0.0: say where the LAN reaches it
            log.info(
                "bus: agents on the LAN connect to %s (publish :%d, subscribe :%d)",
                ", ".join(connect.addresses),
                self.bus.config.port,
                self.bus.config.backend_port,
            )

    async def stop(self) -> None:
        await self.bus.stop()

    def health(self) -> tuple[bool, str]:
        if self.bus.mode == "stopped":
            return False, "the bus is stopped"
        return True, f"bus {self.bus.mode}"

    def status(self) -> dict[str, Any]:
        """The bus's own status, plus ``connect``: where agents on the LAN reach it."""
        return {**_plain(self.bus.status()), "connect": _plain(self.connect())}

    def connect(self) -> BusConnect:
        """Agents' addresses from this host's LAN addresses, listed again every few seconds
        (the status is read every second by each open page)."""
        now = time.monotonic()
        if now - self._lan[0] >= LAN_ADDRESSES_FOR:
            self._lan = (now, [a.address for a in local_addresses()])
        return bus_connect(self.bus.config, self._lan[1])


def _node_keys(edge: Edge) -> CurveKeys:
    """This node's CURVE identity, loaded once: the federated bus holds it while it runs, and
    the peers service takes it from there (from the file only when federation is off)."""
    from argentic_edge.bus.federated import FederatedBus
    from argentic_edge.federation.identity import load_or_create_keys

    bus = getattr(edge.services.get("bus"), "bus", None)
    if isinstance(bus, FederatedBus):
        return cast("CurveKeys", bus.keys)
    return load_or_create_keys(federation_dir(edge.config.data_path))


def _bus_service(edge: Edge) -> Service:
    config = edge.config
    if not federation_wanted(config):
        return BusService(Bus(config.messaging, edge.context))
    from argentic_edge.bus.federated import FederatedBus
    from argentic_edge.federation.identity import load_or_create_keys
    from argentic_edge.federation.trust import DENY_ALL

    keys = load_or_create_keys(federation_dir(config.data_path))
    return BusService(
        FederatedBus(config.messaging, config.discovery.federation, keys, DENY_ALL, edge.context)
    )


def _peers(edge: Edge) -> Service:
    from argentic_edge.bus.federated import FederatedBus
    from argentic_edge.federation.peers import PeersService
    from argentic_edge.federation.trust import TrustStore

    config = edge.config
    bus = getattr(edge.services.get("bus"), "bus", None)
    peers = PeersService(
        config.discovery,
        node_name=config.node_name,
        bus_config=config.messaging,
        web_port=config.web.port if config.web.enabled else 0,
        keys=_node_keys(edge),
        trust=TrustStore(config.discovery.federation, federation_dir(config.data_path)),
        bus=bus if isinstance(bus, FederatedBus) else None,
    )
    certificates = cast("CertManager | None", edge.services.get("certificates"))
    if certificates is not None:
        # The mDNS `tls` key carries the server certificate's fingerprint, kept current on renewal.
        # Whenever peers restarts, so does certificates (it comes first and shares its sections).
        def fingerprint() -> str:  # read at advertisement time
            server = certificates.server
            return server.fingerprint_sha256 if server else ""

        peers.set_fingerprint_provider(fingerprint)
        certificates.on_renewed(lambda _info: peers.refresh_advertisement())
    return peers


@dataclass(frozen=True)
class ServiceSpec:
    """How to build one service, and which configuration sections it depends on."""

    name: str
    sections: tuple[str, ...]  # top-level sections or dotted keys ("discovery.enabled")
    enabled: Callable[[EdgeConfig], bool]
    build: Callable[[Edge], Service]
    after: tuple[str, ...] = ()  # services it holds on to: when one restarts, so does this one
    # What else of the configuration it is built from, compared in apply (an uplink's entry)
    settings: Callable[[EdgeConfig], Any] | None = None

    def changed(self, old: EdgeConfig, new: EdgeConfig) -> bool:
        if any(_value(old, s) != _value(new, s) for s in self.sections):
            return True
        return self.settings is not None and self.settings(old) != self.settings(new)


def _certificates(edge: Edge) -> Service:
    from argentic_edge.certs.files import CertFiles
    from argentic_edge.certs.service import CertManager

    config = edge.config.certificates
    files = CertFiles(
        certs_dir(edge.config.data_path),
        edge.config.node_name,
        certfile=config.certfile,
        keyfile=config.keyfile,
        validity_days=config.validity_days,
        ca_validity_days=config.ca_validity_days,
        renewal_window=config.renewal_window,
    )
    return CertManager(files, check_interval=config.check_interval)


def _bus(edge: Edge) -> Bus | FederatedBus:
    """The running bus (the bus service starts first and every user restarts with it)."""
    return cast(BusService, edge.services["bus"]).bus


def _agents(edge: Edge) -> Service:
    from argentic_edge.inspector.agents import AgentsService

    return AgentsService(
        edge.context, _bus(edge).endpoints.local_subscribe, edge.config.messaging.topic_encoding
    )


def _inspector(edge: Edge) -> Service:
    from argentic_edge.inspector.watcher import InspectorService

    endpoints = _bus(edge).endpoints
    return InspectorService(
        edge.context,
        endpoints.publish,  # TCP: a one-shot publisher waits for its handshake (none on inproc)
        endpoints.local_subscribe,
        edge.config.messaging.topic_encoding,
        edge.status,
        inspector_dir(edge.config.data_path),
    )


def _web(edge: Edge) -> Service:
    from argentic_edge.web import (
        WebService,  # aiohttp is imported only when the web is on
    )

    certificates = edge.services.get("certificates")
    if certificates is None:
        return WebService(edge.config.web, edge)
    manager = cast("CertManager", certificates)
    return WebService(
        edge.config.web, edge, tls=manager.ssl_context, tls_problem=lambda: manager.error
    )


def _value(config: EdgeConfig, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), config)


def _uplink_named(config: EdgeConfig, name: str) -> UplinkConfig | None:
    return next((uplink for uplink in config.uplinks if uplink.name == name), None)


def _uplink_service(name: str) -> Callable[[Edge], Service]:
    """The builder of the ``uplink:<name>`` service."""

    def build(edge: Edge) -> Service:
        from argentic_edge.bridge.link import LinkError
        from argentic_edge.bridge.protocols import make_link
        from argentic_edge.bridge.service import Uplink, presence_topic

        config = edge.config
        uplink = _uplink_named(config, name)
        assert uplink is not None
        # MQTT uplinks keep a retained presence topic with a last will (Home Assistant's
        # availability); other protocols have no retained messages to keep it in.
        presence = presence_topic(config.node_name) if uplink.protocol == "mqtt" else None
        will = (presence, b"offline") if presence is not None else None
        client_id = uplink_client_id(uplink, config.node_name)

        @functools.cache
        def node_id() -> str:
            """Read only by the protocols that name the appliance to the broker (make_link), so
            an appliance with only MQTT makes no key pair for it; a failure is not kept."""
            try:
                return _node_keys(edge).node_id
            except (EdgeError, OSError) as exc:
                raise LinkError(f"this appliance's node id is not readable: {exc}") from None

        def link(callbacks: LinkCallbacks, fallback: int) -> Link:
            return make_link(
                uplink,
                callbacks,
                client_id=client_id,
                node_id=node_id,
                fallback=fallback,
                will=will,
            )

        return Uplink(
            uplink,
            config.messaging,
            make_link=link,
            context=edge.context,
            endpoints=_bus(edge).endpoints,
            presence=presence,
            data_dir=config.data_path,
        )

    return build


def _home_assistant(edge: Edge) -> Service:
    from argentic_edge.homeassistant.discovery import HomeAssistantDiscovery, Identity

    config = edge.config
    first = config.first_mqtt_uplink
    assert first is not None
    return HomeAssistantDiscovery(
        cast("Uplink", edge.services[f"{UPLINK_PREFIX}{first.name}"]),
        lambda: Identity(
            _node_keys(edge).node_id,
            config.node_name,
            edge.panel_url or _page_url(config),
            tuple(uplink.name for uplink in config.uplinks),
        ),
        config.bridge.ha_discovery_prefix,
        edge.status,
        reconnect=edge.restart_uplinks,
        state_file=homeassistant_state_path(config.data_path),
    )


def _page_url(config: EdgeConfig) -> str | None:
    """The status page's address as the LAN reaches it (None while the web is off): a
    wildcard listener is named by this host's first LAN address, else by its host name."""
    web = config.web
    if not web.enabled:
        return None
    host = web.host
    if host in ("0.0.0.0", "::", "*"):
        try:
            addresses = local_addresses(config.discovery.interfaces)
        except (ConfigError, OSError):  # the peers service reports it; the host name still works
            addresses = []
        host = addresses[0].address if addresses else socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.certificates.enabled else "http"
    return f"{scheme}://{host}:{web.port}/"


def _first_mqtt_name(config: EdgeConfig) -> str | None:
    first = config.first_mqtt_uplink
    return first.name if first is not None else None


def _uplink_specs(configs: tuple[EdgeConfig, ...]) -> list[ServiceSpec]:
    """One service per uplink named in any of ``configs`` (the old and the new one in apply):
    each restarts only when its own settings change."""
    names = list(dict.fromkeys(uplink.name for config in configs for uplink in config.uplinks))
    return [
        ServiceSpec(
            f"{UPLINK_PREFIX}{name}",
            ("messaging", "node_name"),
            functools.partial(lambda c, n: _uplink_named(c, n) is not None, n=name),
            _uplink_service(name),
            after=("bus",),
            settings=functools.partial(lambda c, n: _uplink_named(c, n), n=name),
        )
        for name in names
    ]


def service_specs(*configs: EdgeConfig) -> list[ServiceSpec]:
    """Every service in start order, with one ``uplink:<name>`` per uplink of ``configs``. A
    builder hands a later service what it uses of an earlier one; ``after`` restarts the later
    one whenever the earlier one restarts.

    Builders import their modules when called, so a disabled feature costs no memory.
    """
    uplinks = _uplink_specs(configs)
    first_mqtt = {_first_mqtt_name(config) for config in configs} - {None}
    return [
        ServiceSpec(
            "bus",
            (
                "messaging",
                "data_dir",
                "discovery.enabled",
                "discovery.federation.enabled",
                "discovery.federation.export_port",
            ),
            lambda c: True,
            _bus_service,
        ),
        ServiceSpec(
            "certificates",
            ("certificates", "node_name", "data_dir"),
            lambda c: c.certificates.enabled,
            _certificates,
        ),
        # The mDNS record carries the web port (0 when the web is off).
        ServiceSpec(
            "peers",
            ("messaging", "discovery", "node_name", "data_dir", "web.enabled", "web.port"),
            lambda c: c.discovery.enabled,
            _peers,
            after=("bus", "certificates"),
        ),
        *uplinks,
        # Home Assistant discovery goes through the first MQTT uplink.
        ServiceSpec(
            "homeassistant",  # the device's link is the page's address
            (
                "bridge.ha_discovery",
                "bridge.ha_discovery_prefix",
                "node_name",
                "uplinks",  # a sensor each
                "data_dir",
                "web.enabled",
                "web.host",
                "web.port",
                "certificates.enabled",
            ),
            lambda c: c.bridge.ha_discovery and c.first_mqtt_uplink is not None,
            _home_assistant,
            after=tuple(sorted(f"{UPLINK_PREFIX}{name}" for name in first_mqtt)),
            settings=_first_mqtt_name,
        ),
        ServiceSpec("agents", ("messaging",), lambda c: True, _agents, after=("bus",)),
        # Idle (no bus socket) until someone watches: a page, a stream, a recording.
        ServiceSpec(
            "inspector", ("messaging", "data_dir"), lambda c: True, _inspector, after=("bus",)
        ),
        ServiceSpec(
            "web",
            ("web", "certificates", "data_dir"),  # node_name: the pages read it live
            lambda c: c.web.enabled,
            _web,
            after=("certificates",),
        ),
    ]


def _plain(value: Any) -> Any:
    """A status value as plain dicts and lists, the shape ``dataclasses.asdict`` gives, without
    its deep copy of every leaf: with 100 peers and 768 agents and tools that copy tripled the
    time of /api/status (5.4 -> 16.6 ms median)."""
    if value is None or isinstance(value, _LEAVES):
        return value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


_LEAVES = (str, int, float)  # bool is an int


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class Edge:
    """The appliance. ``async with Edge(config):`` runs it; ``apply()`` changes it live."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        config_path: str | None = None,
        addon: bool = False,
        compose: Callable[[Any], Any] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.addon = addon
        # Turns the file the web editor edits into the configuration that runs; the add-on merges
        # its options and the Supervisor's broker in here. None: the file is the configuration.
        self.compose = compose
        # The device's link in Home Assistant when it is not the page's own address: the
        # add-on's ingress panel (set by the add-on runtime before the start).
        self.panel_url: str | None = None
        self.context = zmq.Context()
        self.services: dict[str, Service] = {}
        self._tasks: set[asyncio.Task[list[str]]] = set()
        self.started_at = time.time()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Edge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        async with self._lock:
            sweep_stale_temp_files(self.config.data_path)
            try:
                for spec in service_specs(self.config):
                    if spec.enabled(self.config):
                        await self._start_service(spec)
            except BaseException:
                await self._stop_all()
                raise
            log.info("argentic-edge %s is up as node %r", __version__, self.config.node_name)

    async def run_until(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        """Start, call ``ready()``, run until ``stop`` is set, stop. A stop that comes while the
        services are still starting cuts the start short: the certificates' first check alone
        is a child Python (about a second, more on a busy machine), and a SIGTERM must not wait
        for the rest of the start before the stop even begins."""
        starting = asyncio.create_task(self.start(), name="argentic-edge-start")
        stopped = asyncio.create_task(stop.wait(), name="argentic-edge-stop-signal")
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("stopping while still starting")
                starting.cancel()
            try:
                await starting
            except asyncio.CancelledError:
                if not stop.is_set():
                    raise
            else:
                if ready is not None:
                    ready()
                await stopped
        finally:
            stopped.cancel()
            await self.stop()

    async def _start_service(self, spec: ServiceSpec) -> None:
        started = time.monotonic()
        service = spec.build(self)
        try:
            await service.start()
        except asyncio.CancelledError:  # a stop during the start: give back what it took
            with contextlib.suppress(Exception):
                await service.stop()
            raise
        self.services[spec.name] = service
        log.debug("started %s in %.0f ms", spec.name, (time.monotonic() - started) * 1000)

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_all()
            self.context.term()

    async def _stop_all(self) -> None:
        for name in reversed(list(self.services)):
            service = self.services.pop(name)
            started = time.monotonic()
            try:
                await service.stop()
            except Exception:
                log.exception("service %s did not stop cleanly", name)
            log.debug("stopped %s in %.0f ms", name, (time.monotonic() - started) * 1000)

    async def apply(
        self, config: EdgeConfig, *, restart: frozenset[str] = frozenset()
    ) -> list[str]:
        """Switch to ``config``, restarting only the services whose sections changed (and the
        running ones named in ``restart``, changed or not).

        Returns the names of the restarted services. If a service fails to start with the new
        configuration, the previous configuration is restored and the error is raised.
        """
        async with self._lock:
            previous = self.config
            specs = service_specs(previous, config)
            restarting: set[str] = set()
            for spec in specs:  # in start order, so a dependency is decided before its users
                if not (spec.enabled(previous) or spec.enabled(config)):
                    continue  # off before and after: nothing restarts, nor do its users
                if (
                    spec.changed(previous, config)
                    or spec.enabled(previous) != spec.enabled(config)
                    or restarting.intersection(spec.after)
                    or (spec.name in restart and spec.name in self.services)
                ):
                    restarting.add(spec.name)
            affected = [spec for spec in specs if spec.name in restarting]
            if not affected:
                self.config = config
                return []
            for spec in reversed(affected):
                service = self.services.pop(spec.name, None)
                if service is not None:
                    await service.stop()
            self.config = config
            try:
                for spec in affected:
                    if spec.enabled(config):
                        await self._start_service(spec)
            except Exception as exc:
                if isinstance(exc, EdgeError):  # a port in use, a missing file: the user's to fix
                    log.error(
                        "the new configuration failed to start (%s); the previous one runs again",
                        exc,
                    )
                else:
                    log.exception(
                        "the new configuration failed to start; restoring the previous one"
                    )
                for spec in reversed(affected):
                    service = self.services.pop(spec.name, None)
                    if service is not None:
                        await service.stop()
                self.config = previous
                for spec in affected:
                    if spec.enabled(previous):
                        await self._start_service(spec)
                raise
            names = [spec.name for spec in affected if spec.enabled(config)]
            log.info("configuration applied; restarted: %s", ", ".join(names) or "nothing")
            return names

    def restart_uplinks(self) -> None:
        """Restart every running uplink and their users with the configuration as it is, in a
        task of the Edge's own (the caller, Home Assistant's "Reconnect uplinks" button, is
        among what restarts)."""
        names = frozenset(name for name in self.services if name.startswith(UPLINK_PREFIX))
        task = asyncio.create_task(self.apply(self.config, restart=names))
        self._tasks.add(task)
        task.add_done_callback(self._restarted)

    def _restarted(self, task: asyncio.Task[list[str]]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("restarting failed: %s", task.exception())

    def health(self) -> tuple[bool, list[str]]:
        """True when every enabled service is up; otherwise the reasons."""
        reasons = []
        for name, service in self.services.items():
            up, reason = service.health()
            if not up:
                reasons.append(f"{name}: {reason}")
        return not reasons, reasons

    def status(self) -> dict[str, Any]:
        """One document for the status page, the API and Home Assistant sensors."""
        document: dict[str, Any] = {
            "node": {
                "name": self.config.node_name,
                "version": __version__,
                "uptime": time.time() - self.started_at,
                "addon": self.addon,
            },
        }
        uplinks = []
        for spec in service_specs(self.config):
            service = self.services.get(spec.name)
            if spec.name.startswith(UPLINK_PREFIX):
                if service is not None:
                    uplinks.append(_plain(service.status()))
                continue
            document[spec.name] = _plain(service.status()) if service else {"enabled": False}
        document["uplinks"] = uplinks
        # The first MQTT uplink under its old name, for what read ``bridge`` before uplinks.
        first = _first_mqtt_name(self.config)
        document["bridge"] = next(
            (entry for entry in uplinks if entry["name"] == first), {"enabled": False}
        )
        return document

    def service_health(self) -> dict[str, bool]:
        """Up or not, per running service (the status page's dots)."""
        return {name: service.health()[0] for name, service in self.services.items()}

    # What the web and the add-on runtime may reach of single services; None while one is off.

    def peers(self) -> PeersService | None:
        return cast("PeersService | None", self.services.get("peers"))

    def uplinks(self) -> list[Uplink]:
        """The running uplink services, in configuration order."""
        return [
            cast("Uplink", service)
            for name, service in self.services.items()
            if name.startswith(UPLINK_PREFIX)
        ]

    def home_assistant(self) -> HomeAssistantDiscovery | None:
        return cast("HomeAssistantDiscovery | None", self.services.get("homeassistant"))

    def inspector(self) -> InspectorService | None:
        return cast("InspectorService | None", self.services.get("inspector"))

    def web_port(self) -> int | None:
        """The port the web listens on; None while it is off."""
        web = cast("WebService | None", self.services.get("web"))
        return web.port if web is not None else None
