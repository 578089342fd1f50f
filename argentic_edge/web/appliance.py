"""What the web may see and do of the appliance: a narrow face, so the web never imports app.py.

The Edge (app.py) has this shape; tests may hand the web anything else that has it. Services the
web acts on (approving a peer, removing the device from Home Assistant) are reached through
methods that answer None while that service is off, never by looking a service up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from argentic_edge.config import EdgeConfig

if TYPE_CHECKING:
    from argentic_edge.inspector.watcher import InspectorService


class PeerControls(Protocol):
    """The peers service's buttons."""

    async def approve(self, peer_id: str) -> dict[str, Any]: ...

    async def forget(self, peer_id: str) -> dict[str, Any]: ...


class HomeAssistantControls(Protocol):
    """The Home Assistant discovery service's button."""

    async def withdraw(self) -> int: ...


class Appliance(Protocol):
    """The running appliance as the web sees it. ``config`` and ``config_path`` change when a
    configuration is applied and saved; ``compose`` turns the edited file into what runs."""

    config: EdgeConfig
    config_path: str | None
    compose: Callable[[Any], Any] | None

    def status(self) -> dict[str, Any]: ...

    def health(self) -> tuple[bool, list[str]]: ...

    def service_health(self) -> dict[str, bool]: ...

    async def apply(self, config: EdgeConfig) -> list[str]: ...

    def peers(self) -> PeerControls | None: ...

    def home_assistant(self) -> HomeAssistantControls | None: ...

    def inspector(self) -> InspectorService | None: ...
