"""The appliance as users run it, for the uplink benchmarks: a process of its own
(tests/support/appliance.py) with one uplink, and a plain ZeroMQ agent on its bus.

In a process of its own the appliance has its own event loop and interpreter, as in production;
run inside the benchmark's process it would share one loop with the clients it is measured
against, and the figure would be theirs as much as its own.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.support.appliance import Appliance, appliance_document
from tests.support.bridge import BusClient
from tests.support.config import bus_section

HIGH_WATER_MARK = 100_000  # frames the bus sockets queue: a burst is measured, not dropped
READY_WITHIN = 30.0  # seconds for the uplink to connect


def uplink_ready(status: dict[str, Any]) -> bool:
    return bool(status["state"] == "connected")


@asynccontextmanager
async def appliance_with(
    uplink: dict[str, Any],
    subscribe: str,
    ready: Callable[[dict[str, Any]], bool] = uplink_ready,
) -> AsyncIterator[tuple[Appliance, BusClient]]:
    """The running appliance with ``uplink`` (its outbox durable, as by default) and an agent
    subscribed to ``subscribe`` on its bus, once ``ready(the uplink's status)``."""
    with tempfile.TemporaryDirectory(prefix="argentic-edge-bench-") as workdir:
        document = appliance_document(
            Path(workdir) / "data",
            node_name="bench",
            messaging=bus_section(high_water_mark=HIGH_WATER_MARK),
            uplinks=[uplink],
        )
        app = Appliance(Path(workdir), document).start()
        bus = BusClient((app.bus_publish, app.bus_subscribe), subscribe, HIGH_WATER_MARK)
        try:
            deadline = time.monotonic() + READY_WITHIN
            while not ready(next(u for u in app.status()["uplinks"] if u["name"] == "bench")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the uplink did not connect: {app.log_tail()}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the agent's subscription reaches the proxy
            yield app, bus
        finally:
            bus.close()
            app.stop()
