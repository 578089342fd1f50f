"""Edge: the composition root that builds every service from one EdgeConfig.

It is the only module that knows all services. It starts them in dependency order, stops them in
reverse, answers "is everything up?" for /healthz, gathers one status document for the page and
the API, and applies a new configuration by restarting only the services whose section changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import zmq

from argentic_edge import __version__
from argentic_edge.config import EdgeConfig
from argentic_edge.proxy import Bus

log = logging.getLogger(__name__)


class Service(Protocol):
    """What the composition root needs from a service."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> tuple[bool, str]:
        """(up, reason): reason says why not, in words for /healthz and the status page."""
        ...

    def status(self) -> dict[str, Any]: ...


class BusService:
    """The bus as an Edge service: the Bus plus health and status in the common shape."""

    name = "bus"

    def __init__(self, edge: Edge) -> None:
        self.bus = Bus(edge.config.messaging, edge.context)

    async def start(self) -> None:
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()

    def health(self) -> tuple[bool, str]:
        if self.bus.mode == "stopped":
            return False, "the bus is stopped"
        return True, f"bus {self.bus.mode}"

    def status(self) -> dict[str, Any]:
        stats = self.bus.stats()
        endpoints = self.bus.endpoints
        return {
            "mode": self.bus.mode,
            "publish": endpoints.publish,
            "subscribe": endpoints.subscribe,
            "counters": stats.to_dict() if stats is not None else None,
        }


@dataclass(frozen=True)
class ServiceSpec:
    """How to build one service, and which configuration sections it depends on."""

    name: str
    sections: tuple[str, ...]
    enabled: Callable[[EdgeConfig], bool]
    build: Callable[[Edge], Service]


def _bridge(edge: Edge) -> Service:
    from argentic_edge.bridge import Bridge  # paho is imported only when the bridge runs

    return Bridge.from_edge(edge)


def service_specs() -> list[ServiceSpec]:
    """Every service in start order. Later ones may use earlier ones through ``edge.services``."""
    return [
        ServiceSpec("bus", ("messaging",), lambda c: True, BusService),
        ServiceSpec("bridge", ("messaging", "bridge", "node_name"), lambda c: c.bridge.enabled,
                    _bridge),
    ]


class Edge:
    """The appliance. ``async with Edge(config):`` runs it; ``apply()`` changes it live."""

    def __init__(self, config: EdgeConfig, *, config_path: str | None = None,
                 addon: bool = False) -> None:
        self.config = config
        self.config_path = config_path
        self.addon = addon
        self.context = zmq.Context()
        self.services: dict[str, Service] = {}
        self.started_at = time.time()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Edge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        async with self._lock:
            try:
                for spec in service_specs():
                    if spec.enabled(self.config):
                        await self._start_service(spec)
            except BaseException:
                await self._stop_all()
                raise
            log.info("argentic-edge %s is up as node %r", __version__, self.config.node_name)

    async def _start_service(self, spec: ServiceSpec) -> None:
        service = spec.build(self)
        await service.start()
        self.services[spec.name] = service

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_all()
            self.context.term()

    async def _stop_all(self) -> None:
        for name in reversed(list(self.services)):
            service = self.services.pop(name)
            try:
                await service.stop()
            except Exception:
                log.exception("service %s did not stop cleanly", name)

    async def apply(self, config: EdgeConfig) -> list[str]:
        """Switch to ``config``, restarting only the services whose sections changed.

        Returns the names of the restarted services. If a service fails to start with the new
        configuration, the previous configuration is restored and the error is raised.
        """
        async with self._lock:
            previous = self.config
            specs = service_specs()
            changed = [spec for spec in specs
                       if any(getattr(previous, s) != getattr(config, s) for s in spec.sections)
                       or spec.enabled(previous) != spec.enabled(config)]
            if not changed:
                self.config = config
                return []
            # A service restarts with everything that depends on it (those later in the order).
            first = min(specs.index(spec) for spec in changed)
            affected = specs[first:]
            for spec in reversed(affected):
                service = self.services.pop(spec.name, None)
                if service is not None:
                    await service.stop()
            self.config = config
            try:
                for spec in affected:
                    if spec.enabled(config):
                        await self._start_service(spec)
            except Exception:
                log.exception("the new configuration failed to start; restoring the previous one")
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
        for spec in service_specs():
            service = self.services.get(spec.name)
            document[spec.name] = service.status() if service else {"enabled": False}
        return document
