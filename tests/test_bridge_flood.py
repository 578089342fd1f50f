"""A flood on the way to the broker: what the bridge cannot carry is counted, with its reason.

The bus, the bridge and a real Mosquitto; a real PUB floods a routed topic far faster than the
bridge forwards. Frames lost at the bridge's own SUB queue are dropped by libzmq, which does not
count them: the bridge's reader must say that it fell a full queue behind, in its status, on the
page's data and in /metrics.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from argentic_edge.app import Edge
from argentic_edge.web import metrics
from tests.bridge_support import BusClient, MqttClient, bridge_of, edge_config, prove_paths, \
    wait_until
from tests.brokers import Mosquitto
from tests.flood import FLOOD_LIMIT, Flood


async def test_a_flood_the_bridge_cannot_carry_is_counted_with_its_reason(
        tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        async with Edge(edge_config(broker.port)) as edge:
            bridge = bridge_of(edge)
            await wait_until(lambda: bridge.state == "connected", 10, "the broker connection")
            async with MqttClient(broker.port) as mqtt:
                await mqtt.subscribe("agent/#", qos=0)
                bus = BusClient(edge)
                try:
                    await prove_paths(bus, mqtt, out=("agent/flood", "agent/flood"))
                finally:
                    bus.close()
                endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
                loop = asyncio.get_running_loop()
                flood = await loop.run_in_executor(None, Flood(endpoint, "agent/flood").start)

                def counted() -> bool:
                    return (edge.status()["bridge"]["bus_reader"] or {}).get("queue_full", 0) > 0

                while flood.running and not counted():
                    await asyncio.sleep(0.05)
                sent = await loop.run_in_executor(None, flood.stop)
                assert sent < FLOOD_LIMIT, "the flood ran out and no loss was counted"
                reader = edge.status()["bridge"]["bus_reader"]
                assert reader["queue_full"] > 0
                assert "the bus dropped frames" in reader["load"]
                text = metrics.render(edge.status(), 0)
                assert 'argentic_edge_bus_reader_queue_full_total{reader="bridge"} ' in text
                line = next(row for row in text.splitlines() if row.startswith(
                    'argentic_edge_bus_reader_queue_full_total{reader="bridge"}'))
                assert int(line.split()[-1]) > 0
    finally:
        broker.stop()

