"""Home Assistant MQTT discovery: the appliance appears in Home Assistant as a device.

On every (re)connection of the bridge the retained discovery configs are published again (a
broker without persistence forgets them), then a small JSON state document every ``interval``
seconds; the bridge's own retained presence topic (``online``/``offline`` with a last will) is
the entities' availability. The messages themselves are built in ``entities.py``.

Everything Home Assistant keys on comes from the stable node id, so renaming the appliance
updates the same device. Versions before that built them from the name: the first announcement
clears what they left under the current name, once, and notes it in ``homeassistant.json`` in
the data directory (with the uplinks announced, whose sensors go when an uplink does). The "Reconnect uplinks" button's presses arrive through the bridge's
``listen`` and restart the uplinks through the callable the Edge hands over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from argentic_edge import __version__
from argentic_edge.homeassistant.entities import (
    RECONNECT,
    command_topic,
    discovery_messages,
    legacy_removal_messages,
    removal_messages,
    state_payload,
    state_topic,
    uplink_removal_messages,
)
from argentic_edge.storage import atomic_write

log = logging.getLogger(__name__)

STATE_INTERVAL = 30.0


class RetainedPublisher(Protocol):
    """The bridge, or the ``ha-remove`` command's own connection."""

    async def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None: ...


class Uplink(RetainedPublisher, Protocol):
    """What this service uses of the MQTT uplink it announces through (bridge.service.Uplink)."""

    presence_topic: str | None
    state: str

    def on_connect(self, callback: Callable[[], Awaitable[None]]) -> Callable[[], None]: ...

    def listen(self, topic: str, callback: Callable[[bytes], None]) -> Callable[[], None]: ...


@dataclass(frozen=True)
class Identity:
    """Who the appliance is to Home Assistant: the stable id and the name it shows."""

    node_id: str
    node_name: str
    configuration_url: str | None = None
    uplinks: tuple[str, ...] = ()  # the configured uplinks' names: a sensor each


@dataclass(frozen=True)
class HomeAssistantStatus:
    """The ``homeassistant`` section of the status document."""

    enabled: bool
    prefix: str
    node_id: str | None  # None until the first announcement
    state_topic: str | None
    command_topic: str | None
    configuration_url: str | None
    announcements: int
    reconnects: int
    states_published: int
    withdrawn: bool


class HomeAssistantDiscovery:
    """Announces the appliance through the bridge; a service like the others.

    ``status`` is the appliance's status document, the source of the sensors' values;
    ``reconnect`` restarts the uplinks (this service among what restarts); ``state_file`` keeps
    which names' configs of older versions were cleared and which uplinks have a sensor.
    """

    name = "homeassistant"

    def __init__(
        self,
        bridge: Uplink,
        identity: Callable[[], Identity],
        prefix: str,
        status: Callable[[], dict[str, Any]],
        *,
        reconnect: Callable[[], None],
        state_file: Path,
        interval: float = STATE_INTERVAL,
    ) -> None:
        self.bridge = bridge
        self._identity_source = identity
        self._identity: Identity | None = None
        self.status_document = status
        self.reconnect = reconnect
        self.state_file = state_file
        self.interval = interval
        self.prefix = prefix
        self.announcements = 0
        self.states = 0
        self.reconnects = 0
        self.withdrawn = False
        self._last_count: tuple[float, int] | None = None
        self._undo: list[Callable[[], None]] = []
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def identity(self) -> Identity:
        """Asked for when first needed, at the first announcement: the node id is made then (a
        node that never reaches a broker makes no key pair for Home Assistant's sake)."""
        if self._identity is None:
            self._identity = self._identity_source()
        return self._identity

    async def start(self) -> None:
        self._undo = [self.bridge.on_connect(self._announce)]
        self._task = asyncio.create_task(self._publish_periodically(), name="ha-discovery")

    async def stop(self) -> None:
        for undo in self._undo:
            undo()
        self._undo, self._listening = [], False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def health(self) -> tuple[bool, str]:
        if self.withdrawn:
            return True, "removed from Home Assistant until the next start"
        return True, f"announced {self.announcements} time(s)"

    def status(self) -> HomeAssistantStatus:
        identity = self._identity  # None until the first announcement
        node_id = identity.node_id if identity is not None else None
        return HomeAssistantStatus(
            enabled=True,
            prefix=self.prefix,
            node_id=node_id,
            state_topic=state_topic(node_id) if node_id else None,
            command_topic=command_topic(node_id) if node_id else None,
            configuration_url=identity.configuration_url if identity is not None else None,
            announcements=self.announcements,
            reconnects=self.reconnects,
            states_published=self.states,
            withdrawn=self.withdrawn,
        )

    async def withdraw(self) -> int:
        """Remove the device from Home Assistant (before uninstalling the add-on): nothing is
        announced again until the service starts anew. Raises BridgeError when offline."""
        identity = self.identity
        removed = await remove_from_home_assistant(
            self.bridge, identity.node_id, identity.node_name, self.prefix, identity.uplinks
        )
        self.withdrawn = True
        log.info("removed the appliance from Home Assistant (%d retained topics cleared)", removed)
        return removed

    def _command(self, payload: bytes) -> None:
        """A press of a button on the device in Home Assistant."""
        if payload.strip() != RECONNECT.encode():
            log.warning(
                "homeassistant: ignoring the command %r on %s; expected %r",
                payload[:40],
                command_topic(self.identity.node_id),
                RECONNECT,
            )
            return
        if self.reconnects:  # a second copy, or a press while the restart (which ends this
            return  # service too: its successor counts afresh) is under way
        self.reconnects += 1
        log.info("homeassistant: 'Reconnect uplinks' pressed; restarting the uplinks")
        self.reconnect()

    async def _announce(self) -> None:
        if self.withdrawn:
            return
        identity = self.identity
        if not self._listening:  # the first announcement: the buttons work from now on
            self._undo.append(self.bridge.listen(command_topic(identity.node_id), self._command))
            self._listening = True
        await self._clear_stale()
        for topic, payload, _retain in discovery_messages(
            identity.node_id,
            identity.node_name,
            __version__,
            self.bridge.presence_topic or "",  # set: discovery goes through an MQTT uplink
            self.prefix,
            identity.configuration_url,
            identity.uplinks,
        ):
            await self.bridge.publish_retained(topic, payload)
        self.announcements += 1
        log.info("announced the appliance to Home Assistant (prefix %s)", self.prefix)
        await self._publish_state()

    async def _clear_stale(self) -> None:
        """Empty the retained configs nobody updates any more: once per name and data
        directory the name-based ones an older version left (its device would stay behind with
        every entity unavailable), and the sensors of uplinks gone from the configuration.
        ``state_file`` keeps what was done."""
        noted = _read_state(self.state_file)
        name, identity = self.identity.node_name, self.identity
        cleared = set(noted.get("legacy_cleared", []))
        gone = [u for u in noted.get("uplinks", []) if u not in identity.uplinks]
        messages = uplink_removal_messages(identity.node_id, gone, self.prefix)
        if name not in cleared:
            messages += legacy_removal_messages(name, self.prefix)
        for topic, payload, _retain in messages:
            await self.bridge.publish_retained(topic, payload)
        document = {"legacy_cleared": sorted({*cleared, name}), "uplinks": list(identity.uplinks)}
        if document != noted:
            try:
                atomic_write(self.state_file, json.dumps(document, indent=2) + "\n")
            except OSError as exc:  # clearing again next time is harmless
                log.warning(
                    "homeassistant: cannot note what was cleared in %s: %s", self.state_file, exc
                )
        if name not in cleared:
            log.info("homeassistant: cleared the name-based discovery configs of %r", name)
        if gone:
            log.info("homeassistant: removed the sensors of the uplinks %s", ", ".join(gone))

    async def _publish_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.bridge.state == "connected" and not self.withdrawn:
                await self._publish_state()

    async def _publish_state(self) -> None:
        await self.bridge.publish_retained(state_topic(self.identity.node_id), self.state(), qos=0)
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
            uplinks={
                entry["name"]: entry.get("state") == "connected"
                for entry in status.get("uplinks", [])
            },
        )


async def remove_from_home_assistant(
    bridge: RetainedPublisher,
    node_id: str | None,
    node_name: str,
    prefix: str,
    uplinks: tuple[str, ...] = (),
) -> int:
    """Empty retained configs (Home Assistant removes the device) and empty retained states,
    under the stable id (None: it was never made) and under the name older versions used;
    returns how many topics were cleared."""
    messages = legacy_removal_messages(node_name, prefix)
    if node_id is not None:
        messages = [*removal_messages(node_id, prefix, uplinks), *messages]
    for topic, payload, _retain in messages:
        await bridge.publish_retained(topic, payload)
    return len(messages)


def _read_state(path: Path) -> dict[str, Any]:
    """``homeassistant.json``: the names cleared, the uplinks announced; empty when missing."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {
            "legacy_cleared": [str(name) for name in document.get("legacy_cleared", [])],
            "uplinks": [str(name) for name in document.get("uplinks", [])],
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        log.warning("homeassistant: %s is unreadable (%s); clearing again", path, exc)
        return {}
