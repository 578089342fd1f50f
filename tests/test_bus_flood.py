"""One publisher flooding a watched topic must not freeze the appliance.

Every flood here is bounded in count and stops early once what the test waits for happened:
each assertion is "it happened while the flood was still going", never a time limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from argentic_edge.app import Edge
from argentic_edge.config import parse_config
from argentic_edge.inspector.agents import AgentsService
from tests.support.appliance import Appliance, appliance_document
from tests.support.config import config_document
from tests.support.flood import FLOOD_LIMIT, Flood, publish_some


async def warm_up(service: AgentsService, endpoint: str, topic: str) -> None:
    """Until the registry has read one frame: its subscription reached the bus."""
    loop = asyncio.get_running_loop()
    while service.registry.messages == 0:
        await loop.run_in_executor(None, publish_some, endpoint, topic)


@pytest.mark.parametrize("topic", ["_ping/x", "agent/status/info"])
async def test_another_task_keeps_running_while_a_watched_topic_is_flooded(
    tmp_path: Path, topic: str
) -> None:
    config = parse_config(config_document(tmp_path))
    async with Edge(config) as edge:
        service = edge.services["agents"]
        assert isinstance(service, AgentsService)
        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
        await warm_up(service, endpoint, topic)
        loop = asyncio.get_running_loop()
        flood = await loop.run_in_executor(None, Flood(endpoint, topic).start)
        runs = 0
        while runs < 20 and flood.running:
            await asyncio.sleep(0.001)  # the other task: it runs only if the loop gets a turn
            runs += 1
        sent = await loop.run_in_executor(None, flood.stop)
        assert runs >= 20 and sent < FLOOD_LIMIT, (
            f"the other task ran {runs} times while {sent} frames flooded {topic}"
        )
        stats = service.status().reader
        assert stats["frames"] > 0


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    app = Appliance(
        tmp_path / "flooded", appliance_document(tmp_path / "data", certificates={"enabled": False})
    )
    app.start()
    yield app
    app.stop()


def test_healthz_answers_during_a_flood(appliance: Appliance) -> None:
    publish_some(appliance.bus_publish, "_ping/x")
    flood = Flood(appliance.bus_publish, "_ping/x").start()
    answer = None
    while answer is None and flood.running:
        try:
            answer = appliance.health()
        except OSError:
            continue
    sent = flood.stop()
    assert answer is not None and sent < FLOOD_LIMIT, (
        f"/healthz did not answer while {sent} frames flooded the bus"
    )
    status = appliance.status()["agents"]["reader"]
    assert status["frames"] > 0


def test_sigterm_stops_a_flooded_appliance(appliance: Appliance) -> None:
    assert appliance.process is not None
    process = appliance.process
    publish_some(appliance.bus_publish, "agent/status/info")
    flood = Flood(appliance.bus_publish, "agent/status/info").start()
    process.terminate()
    while process.poll() is None and flood.running:
        time.sleep(0.01)
    exited = process.poll() is not None
    sent = flood.stop()
    assert exited and sent < FLOOD_LIMIT, (
        f"the appliance did not stop on SIGTERM while {sent} frames flooded the bus"
    )
    assert process.wait(timeout=15) == 0
