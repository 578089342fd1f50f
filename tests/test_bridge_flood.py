"""A flood on the way to the broker: what the bridge cannot carry is counted, with its reason.

The bus, the bridge and a real Mosquitto; a real PUB floods a routed topic far faster than the
bridge forwards. Frames lost at the bridge's own SUB queue are dropped by libzmq, which does not
count them: the bridge's reader must say that it fell a full queue behind, in its status, on the
page's data and in /metrics.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import argentic_edge.bridge.service as bridge_service
from argentic_edge.app import Edge
from argentic_edge.web import metrics
from tests.support.bridge import (
    BusClient,
    MqttClient,
    bridge_of,
    edge_config,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto
from tests.support.flood import FLOOD_LIMIT, Flood


async def test_a_flood_the_bridge_cannot_carry_is_counted_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short queue falls behind within the flood even on a loaded machine (with 100,000 frames
    # the flood once ran out first in CI while other work held the CPU).
    monkeypatch.setattr(bridge_service, "SUB_HIGH_WATER_MARK", 5_000)
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
                assert 'argentic_edge_bus_reader_queue_full_total{reader="uplink:mqtt"} ' in text
                line = next(
                    row
                    for row in text.splitlines()
                    if row.startswith(
                        'argentic_edge_bus_reader_queue_full_total{reader="uplink:mqtt"}'
                    )
                )
                assert int(line.split()[-1]) > 0
    finally:
        broker.stop()


class StallingRelay:
    """TCP between the bridge and the broker that can stop reading what the bridge sends (its
    socket buffers fill, paho queues the rest) and then cut the connection."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        self.reading = asyncio.Event()
        self.reading.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> StallingRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self._writers += [client_w, broker_w]

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stalls: bool
        ) -> None:
            while True:
                if stalls:
                    await self.reading.wait()
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(
            pipe(client_r, broker_w, True), pipe(broker_r, client_w, False), return_exceptions=True
        )

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self.reading.set()


async def test_qos0_messages_paho_still_held_when_the_connection_went_are_counted(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        async with (
            StallingRelay(broker.port) as relay,
            Edge(edge_config(relay.port)) as edge,
            MqttClient(broker.port) as mqtt,
        ):
            bridge = bridge_of(edge)
            await wait_until(lambda: bridge.state == "connected", 10, "the broker connection")
            await mqtt.subscribe("agent/#", qos=0)
            bus = BusClient(edge)
            try:
                await prove_paths(bus, mqtt, out=("agent/probe", "agent/probe"))
                route = bridge.status().routes[0]
                assert route["topic"] == "agent/#"
                before = route["out"]["messages"]
                relay.reading.clear()
                count = 5_000
                payload = b'{"type":"INFO","data":"' + b"x" * 4000 + b'"}'  # 20 MB in all
                read = bridge.status().bus_reader["frames"]
                for chunk in range(count // 500):  # under the PUB's high-water mark each time
                    for _ in range(500):
                        await bus.send("agent/bulk", payload)
                    await wait_until(
                        lambda chunk=chunk: (
                            bridge.status().bus_reader["frames"] >= read + 500 * (chunk + 1)
                        ),
                        20,
                        "the bridge reading them",
                    )
                relay.cut()
                await wait_until(lambda: bridge.state != "connected", 10, "the cut")
            finally:
                bus.close()
            out = bridge.status().routes[0]["out"]
            lost = out["dropped"].get("not_connected", 0)
            assert lost > 0, out
            assert out["messages"] - before + lost == count, out
    finally:
        broker.stop()
