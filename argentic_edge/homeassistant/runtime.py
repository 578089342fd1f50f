"""Add-on mode (``argentic-edge run --addon``): Home Assistant's Supervisor configures the appliance.

The configuration is the add-on's options (/data/options.json) with the advanced YAML file
(/config/argentic-edge.yaml) adding to them; the web listens on the ingress port the Supervisor
assigned and accepts ingress only from the Supervisor; when no broker is configured, the
Supervisor's MQTT service provides one, adopted live as soon as it appears, so the bus and the
rest never wait for Mosquitto at boot. The pieces are in homeassistant.py; this module runs them.

The paths can be moved with ARGENTIC_EDGE_ADDON_DATA, ARGENTIC_EDGE_ADDON_CONFIG and
ARGENTIC_EDGE_ADDON_RUN (for running outside Home Assistant, as the tests do), and the
Supervisor's address with SUPERVISOR_API.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from argentic_edge.config import (
    ConfigError,
    EdgeConfig,
    Problem,
    parse_config,
    read_yaml,
)
from argentic_edge.homeassistant.options import (
    EXTRA_CONFIG_PATH,
    OPTIONS_PATH,
    AddonError,
    apply_supervisor_mqtt,
    merge_config,
    options_to_config,
    read_options,
    shadowed_keys,
)
from argentic_edge.homeassistant.supervisor import (
    HEALTHZ_URL_PATH,
    SupervisorClient,
    SupervisorError,
    write_healthz_url,
)

log = logging.getLogger(__name__)


class AddonAppliance(Protocol):
    """What the add-on runtime needs of the running appliance (the Edge, built by the CLI's run
    command: this module does not know app.py). ``panel_url`` is the device's link in Home
    Assistant, set before the start."""

    panel_url: str | None

    async def run_until(
        self, stop: asyncio.Event, ready: Callable[[], None] | None = None
    ) -> None: ...

    async def apply(self, config: EdgeConfig) -> list[str]: ...

    def web_port(self) -> int | None: ...


# Builds the appliance from the configuration, the file the web editor edits, and the function
# that turns that file into the running configuration (AddonRuntime.compose).
ApplianceFactory = Callable[[EdgeConfig, str, Callable[[Any], Any]], AddonAppliance]


@dataclass(frozen=True)
class AddonPaths:
    options: Path
    extra: Path
    data: Path
    healthz_url: Path

    @classmethod
    def from_env(cls) -> AddonPaths:
        data = Path(os.environ.get("ARGENTIC_EDGE_ADDON_DATA", str(OPTIONS_PATH.parent)))
        config = Path(os.environ.get("ARGENTIC_EDGE_ADDON_CONFIG", str(EXTRA_CONFIG_PATH.parent)))
        run = Path(os.environ.get("ARGENTIC_EDGE_ADDON_RUN", str(HEALTHZ_URL_PATH.parent)))
        return cls(
            data / OPTIONS_PATH.name,
            config / EXTRA_CONFIG_PATH.name,
            data,
            run / HEALTHZ_URL_PATH.name,
        )


class AddonRuntime:
    """Builds the configuration from the Supervisor's sources and keeps it current."""

    def __init__(self, paths: AddonPaths, supervisor: SupervisorClient) -> None:
        self.paths = paths
        self.supervisor = supervisor
        self.options_raw: dict[str, Any] = {}
        self.ingress_port: int | None = None
        self.slug: str | None = None
        self.mqtt_service: Mapping[str, Any] | None = None

    async def load(self) -> EdgeConfig:
        """The configuration to start with: options, the YAML file, the ingress port."""
        try:
            self.options_raw = options_to_config(read_options(self.paths.options))
        except AddonError as exc:
            raise ConfigError([Problem(str(self.paths.options), None, str(exc))]) from None
        self.options_raw["data_dir"] = str(self.paths.data)
        try:
            info = await self.supervisor.addon_info()
        except SupervisorError as exc:
            log.warning("no add-on info from the Supervisor (%s); the web keeps its port", exc)
        else:
            self.ingress_port = info.get("ingress_port") or None
            self.slug = info.get("slug") or None
        return self.current()

    def panel_url(self) -> str | None:
        """The add-on's page in Home Assistant's sidebar (its ingress panel), the link on the
        appliance's device; None when the Supervisor did not say which add-on this is."""
        return f"homeassistant://hassio/ingress/{self.slug}" if self.slug else None

    def current(self) -> EdgeConfig:
        """The configuration from what is known now (options, YAML file, broker service)."""
        return parse_config(self.compose(self._extra()))

    def _extra(self) -> Any:
        return read_yaml(self.paths.extra) if self.paths.extra.is_file() else None

    def compose(self, extra: Any) -> dict[str, Any]:
        """The running configuration from the advanced YAML file's document (the web editor
        edits that file): the options win, the file adds, the Supervisor's broker fills in."""
        raw = dict(self.options_raw)
        if isinstance(extra, Mapping):
            for key in shadowed_keys(raw, extra):
                log.warning(
                    "%s in %s has no effect: the add-on option sets it", key, self.paths.extra
                )
            raw = merge_config(raw, extra)
        elif extra is not None:
            raise ConfigError([Problem(str(self.paths.extra), extra, "expected a mapping")])
        web = raw.get("web") or {}
        if self.ingress_port and isinstance(web, Mapping):  # else parse_config names the shape
            raw["web"] = {**web, "port": self.ingress_port, "ingress": True}
        if self.mqtt_service is not None:
            raw = apply_supervisor_mqtt(raw, self.mqtt_service)
        return raw

    def needs_broker(self, config: EdgeConfig) -> bool:
        return config.bridge.enabled and config.bridge.mqtt.broker_address is None

    async def adopt_broker(self, edge: AddonAppliance) -> None:
        """Wait for the Supervisor's MQTT service (Mosquitto may start after us), then switch
        the bridge to it. Meanwhile the bridge shows "waiting for broker"."""
        service = await self.supervisor.wait_for_mqtt_service()
        if service is None:
            return
        self.mqtt_service = service
        try:
            await edge.apply(self.current())
        except (ConfigError, Exception) as exc:  # the running configuration stays as it was
            log.error("could not use the Supervisor's MQTT broker: %s", exc)

    def announce_health_url(self, edge: AddonAppliance) -> None:
        """Tell the Dockerfile's HEALTHCHECK where /healthz answers."""
        port = edge.web_port()
        if port is not None:
            write_healthz_url(port, self.paths.healthz_url)


async def run_addon(stop: asyncio.Event, appliance: ApplianceFactory) -> None:
    """The appliance as the add-on: run until ``stop`` is set."""
    paths = AddonPaths.from_env()
    async with SupervisorClient() as supervisor:
        runtime = AddonRuntime(paths, supervisor)
        config = await runtime.load()
        logging.getLogger().setLevel(config.log_level.upper())
        edge = appliance(config, str(paths.extra), runtime.compose)
        edge.panel_url = runtime.panel_url()
        adopting: list[asyncio.Task[None]] = []

        def ready() -> None:
            runtime.announce_health_url(edge)
            if runtime.needs_broker(config):
                adopting.append(
                    asyncio.create_task(runtime.adopt_broker(edge), name="supervisor-mqtt")
                )

        try:
            await edge.run_until(stop, ready)  # a SIGTERM during the start cuts it short
        finally:
            for task in adopting:
                task.cancel()
            await asyncio.gather(*adopting, return_exceptions=True)
