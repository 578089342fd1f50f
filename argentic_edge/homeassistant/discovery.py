"""Home Assistant MQTT discovery: the appliance appears in Home Assistant as a device.

On every (re)connection of the bridge the retained discovery configs are published again (a
broker without persistence forgets them), then a small JSON state document every ``interval``
seconds; the bridge's own retained presence topic (``online``/``offline`` with a last will) is
the entities' availability. The messages themselves are built in ``homeassistant.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from argentic_edge import __version__
from argentic_edge.homeassistant.entities import (
    discovery_messages,
    removal_messages,
    state_payload,
)

if TYPE_CHECKING:
    from argentic_edge.bridge.service import Uplink

log = logging.getLogger(__name__)

STATE_INTERVAL = 30.0


def state_topic(node_name: str) -> str:
    return f"argentic/edge/{node_name}/state"


class RetainedPublisher(Protocol):
    """The bridge, or the ``ha-remove`` command's own connection."""

    async def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None: ...


@dataclass(frozen=True)
class HomeAssistantStatus:
    """The ``homeassistant`` section of the status document."""

    enabled: bool
    prefix: str
    state_topic: str
    announcements: int
    states_published: int
    withdrawn: bool


class HomeAssistantDiscovery:
    """Announces the appliance through the bridge; a service like the others.

    ``status`` is the appliance's status document, the source of the sensors' values.
    """

    name = "homeassistant"

    def __init__(
        self,
        bridge: Uplink,
        node_name: str,
        prefix: str,
        status: Callable[[], dict[str, Any]],
        interval: float = STATE_INTERVAL,
    ) -> None:
        self.bridge = bridge
        self.status_document = status
        self.interval = interval
        self.node = node_name
        self.prefix = prefix
        self.announcements = 0
        self.states = 0
        self.withdrawn = False
        self._last_count: tuple[float, int] | None = None
        self._remove_hook: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._remove_hook = self.bridge.on_connect(self._announce)
        self._task = asyncio.create_task(self._publish_periodically(), name="ha-discovery")

    async def stop(self) -> None:
        if self._remove_hook is not None:
            self._remove_hook()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def health(self) -> tuple[bool, str]:
        if self.withdrawn:
            return True, "removed from Home Assistant until the next start"
        return True, f"announced {self.announcements} time(s)"

    def status(self) -> HomeAssistantStatus:
        return HomeAssistantStatus(
            enabled=True,
            prefix=self.prefix,
            state_topic=state_topic(self.node),
            announcements=self.announcements,
            states_published=self.states,
            withdrawn=self.withdrawn,
        )

    async def withdraw(self) -> int:
        """Remove the device from Home Assistant (before uninstalling the add-on): nothing is
        announced again until the service starts anew. Raises BridgeError when offline."""
        removed = await remove_from_home_assistant(self.bridge, self.node, self.prefix)
        self.withdrawn = True
        log.info("removed the appliance from Home Assistant (%d retained topics cleared)", removed)
        return removed

    async def _announce(self) -> None:
        if self.withdrawn:
            return
        for topic, payload, _retain in discovery_messages(
            self.node,
            self.node,
            __version__,
            self.bridge.presence_topic or "",  # set: discovery goes through an MQTT uplink
            state_topic(self.node),
            self.prefix,
        ):
            await self.bridge.publish_retained(topic, payload)
        self.announcements += 1
        log.info("announced the appliance to Home Assistant (prefix %s)", self.prefix)
        await self._publish_state()

    async def _publish_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.bridge.state == "connected" and not self.withdrawn:
                await self._publish_state()

    async def _publish_state(self) -> None:
        await self.bridge.publish_retained(state_topic(self.node), self.state(), qos=0)
        self.states += 1

    def state(self) -> bytes:
        """The sensors' values from the appliance's own status document."""
        status = self.status_document()
        published = ((status["bus"].get("counters") or {}).get("frontend") or {}).get(
            "messages_in", 0
        )
        now = time.monotonic()
        rate = 0.0
        if self._last_count is not None and now > self._last_count[0]:
            rate = max(0, published - self._last_count[1]) / (now - self._last_count[0])
        self._last_count = (now, published)
        certificates = status["certificates"].get("certificates") or []
        days = [item["days_left"] for item in certificates if item.get("name") == "server"]
        return state_payload(
            bus_rate=rate,
            bridge_connected=status["bridge"].get("state") == "connected",
            peers_linked=sum(
                1 for peer in status["peers"].get("peers", []) if peer.get("state") == "linked"
            ),
            agents_seen=len(status["agents"].get("agents", [])),
            cert_days_left=int(days[0]) if days else None,
        )


async def remove_from_home_assistant(bridge: RetainedPublisher, node_name: str, prefix: str) -> int:
    """Empty retained configs (Home Assistant removes the device) and an empty retained state;
    returns how many topics were cleared."""
    messages = [*removal_messages(node_name, prefix), (state_topic(node_name), b"", True)]
    for topic, payload, _retain in messages:
        await bridge.publish_retained(topic, payload)
    return len(messages)
