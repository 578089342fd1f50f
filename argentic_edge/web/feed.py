"""The status document the page, the API and the event stream share, and its live feed.

One sampler task builds the document once per interval while someone watches, however many pages
are open: reading the proxy counters costs a round trip to the proxy thread, which should not grow
with the number of browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from argentic_edge.config import MASK, Secret
from argentic_edge.web.appliance import Appliance
from argentic_edge.web.logbuffer import RecentWarnings

log = logging.getLogger(__name__)

# Sections the page always shows, present or not ("disabled" when the service is absent).
SECTIONS = ("bus", "bridge", "homeassistant", "peers", "certificates", "agents")


def _plain(value: Any) -> str:
    return MASK if isinstance(value, Secret) else str(value)


def to_json(document: Any) -> str:
    """JSON for anything a service's status may hold (paths, datetimes, secrets masked)."""
    return json.dumps(document, default=_plain, separators=(",", ":"))


class StatusUnavailable(Exception):
    """A service failed while reporting its status."""


def status_document(appliance: Appliance, warnings: RecentWarnings) -> dict[str, Any]:
    try:
        document = appliance.status()
        healthy, reasons = appliance.health()
        services = appliance.service_health()
    except Exception as exc:
        log.exception("web: a service failed to report its status")
        raise StatusUnavailable(f"a service failed to report its status: {exc}") from None
    for name in SECTIONS:
        document.setdefault(name, {"enabled": False})
    document.setdefault("uplinks", [])
    document["health"] = {"ok": healthy, "reasons": reasons, "services": services}
    document["warnings"] = warnings.records()
    document["time"] = time.time()
    return document


class StatusFeed:
    """Fan-out of periodic status snapshots (as JSON text) to any number of watchers."""

    def __init__(self, build: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self.build = build
        self.interval = interval
        self.latest = ""
        self._version = 0
        self._watchers = 0
        self._closed = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def updates(self) -> AsyncIterator[str]:
        """The current snapshot, then each new one, until the feed closes."""
        self._watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sample(), name="argentic-edge-status-feed")
        seen = 0
        try:
            while True:

                def ready(seen: int = seen) -> bool:
                    return self._closed or self._version > seen

                async with self._changed:
                    await self._changed.wait_for(ready)
                if self._closed:
                    return
                seen = self._version
                yield self.latest
        finally:
            self._watchers -= 1

    async def _sample(self) -> None:
        while self._watchers > 0 and not self._closed:
            try:
                self.latest = to_json(self.build())
            except StatusUnavailable as exc:
                self.latest = to_json({"error": str(exc)})
            async with self._changed:
                self._version += 1
                self._changed.notify_all()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """End every stream (on_shutdown: open event streams must not hold up a restart)."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


FEED = web.AppKey("feed", StatusFeed)
