"""The durable outbox end to end: a real appliance process, a real Mosquitto, a real SIGKILL.

The broker is down; agents publish N messages on the bus; the appliance keeps them in its
outbox on disk and is killed with SIGKILL; it starts again (the broker still down) and finds
them; the broker comes back and every one of the N arrives, in order, none lost. And the same
while the broker is up but stalled (SIGSTOP): what went straight to it and stayed
unacknowledged is sent again after the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from argentic_edge.bridge.durable import WRITE_AFTER
from argentic_edge.storage import outbox_path
from tests.support.appliance import Appliance, appliance_document
from tests.support.bridge import MqttClient, Received, message, wait_until
from tests.support.brokers import Mosquitto

COUNT = 2000
ROUTES = [{"topic": "agent/out/#", "direction": "out", "qos": 1}]


def document(data: Path, broker_port: int) -> dict[str, Any]:
    return appliance_document(
        data,
        bridge={
            "enabled": True,
            "ha_discovery": False,
            "mqtt": {
                "broker_address": "127.0.0.1",
                "port": broker_port,
                "connect_retry_delay": 0.1,
            },
            "routes": ROUTES,
            "buffer": {"max_messages": 100_000, "durable": True},
        },
    )


def waiting(appliance: Appliance) -> int:
    """Messages in the uplink's outbox, as the status API says."""
    [uplink] = appliance.status()["uplinks"]
    return int(uplink["buffer"]["messages"])


@asynccontextmanager
async def broker_and_appliance(
    tmp_path: Path,
) -> AsyncIterator[tuple[Mosquitto, Appliance, zmq.asyncio.Socket]]:
    """A stopped Mosquitto that keeps a subscriber's session (persistence on: what the
    appliance sends after the broker's return waits for it even if it is not back yet itself),
    an appliance not started yet, and an agent's PUB for its bus."""
    broker = Mosquitto(tmp_path / "broker", extra_conf=["max_queued_messages 0"])
    broker.start()
    async with MqttClient(broker.port, client_id="watcher", clean=False) as watcher:
        await watcher.subscribe("agent/out/#", qos=1)
    broker.stop()
    appliance = Appliance(tmp_path / "edge", document(tmp_path / "data", broker.port))
    context = zmq.asyncio.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        yield broker, appliance, pub
    finally:
        pub.close()
        context.term()
        await asyncio.to_thread(appliance.stop)
        broker.stop()


async def test_broker_down_sigkill_restart_broker_back_every_message_arrives_in_order(
    tmp_path: Path,
) -> None:
    async with broker_and_appliance(tmp_path) as (broker, appliance, pub):
        await asyncio.to_thread(appliance.start)
        pub.connect(appliance.bus_publish)
        probes = 0
        while not await asyncio.to_thread(waiting, appliance):  # zmq: until subscriptions land
            await pub.send(b"agent/out/probe " + message("probe"))
            probes += 1
            await asyncio.sleep(0.05)
        for number in range(COUNT):
            await pub.send(f"agent/out/{number} ".encode() + message("n", i=number))
            if number % 100 == 99:  # within the bus's high-water marks: the bus drops past them
                await asyncio.sleep(0.02)
        await wait_until(
            lambda: waiting(appliance) == probes + COUNT,
            timeout=60,
            what=f"{probes} probes and {COUNT} messages in the outbox",
        )
        assert outbox_path(tmp_path / "data", "mqtt").exists()

        await asyncio.to_thread(appliance.kill)
        await asyncio.to_thread(appliance.start)  # the broker is still down
        assert await asyncio.to_thread(waiting, appliance) == probes + COUNT
        assert "waiting from before the restart" in appliance.output()

        broker.start()
        await wait_until(lambda: waiting(appliance) == 0, timeout=120, what="the outbox drained")
        async with MqttClient(broker.port, client_id="watcher", clean=False) as watcher:
            got: list[Received] = []
            while len(got) < COUNT:
                item = await watcher.receive(30)
                if item.topic != "agent/out/probe":
                    got.append(item)
        assert [item.topic for item in got] == [f"agent/out/{n}" for n in range(COUNT)]
        assert [json.loads(item.payload)["i"] for item in got] == list(range(COUNT))


async def test_in_flight_and_never_acknowledged_then_sigkill_every_message_arrives(
    tmp_path: Path,
) -> None:
    async with broker_and_appliance(tmp_path) as (broker, appliance, pub):
        broker.start()
        await asyncio.to_thread(appliance.start)
        pub.connect(appliance.bus_publish)
        await wait_until(lambda: uplink(appliance)["state"] == "connected", 20, "connected")
        while not await asyncio.to_thread(lambda: sent(appliance)):  # zmq: subscriptions land
            await pub.send(b"agent/out/probe " + message("probe"))
            await asyncio.sleep(0.05)
        await wait_until(lambda: uplink(appliance)["in_flight"] == 0, 20, "probes acknowledged")

        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)  # connected, reading nothing, acking nothing
        for number in range(INFLIGHT_COUNT):
            await pub.send(f"agent/out/{number} ".encode() + message("n", i=number))
        window = await asyncio.to_thread(lambda: uplink(appliance)["window"])

        def stalled() -> bool:
            state = uplink(appliance)
            return bool(state["in_flight"] == window and waiting(appliance) > 0)

        await wait_until(stalled, 20, "a full window in flight and the rest waiting")
        await asyncio.sleep(WRITE_AFTER + 0.5)  # unacknowledged that long: on disk
        await asyncio.to_thread(appliance.kill)
        broker.kill()  # stopped, it never read what was sent to it: gone with it
        broker.start()
        await asyncio.to_thread(appliance.start)
        async with MqttClient(broker.port, client_id="watcher", clean=False) as watcher:
            got: set[int] = set()
            with contextlib.suppress(TimeoutError):  # until nothing more comes
                while len(got) < INFLIGHT_COUNT:
                    item = await watcher.receive(10)
                    if item.topic != "agent/out/probe":
                        got.add(json.loads(item.payload)["i"])
        lost = sorted(set(range(INFLIGHT_COUNT)) - got)
        assert not lost, f"lost {len(lost)}: {lost[:10]}... (the window was {window})"


INFLIGHT_COUNT = 200


def uplink(appliance: Appliance) -> dict[str, Any]:
    [entry] = appliance.status()["uplinks"]
    return dict(entry)


def sent(appliance: Appliance) -> int:
    """Messages the uplink's route carried to the broker."""
    [route] = uplink(appliance)["routes"]
    return int(route["out"]["messages"])
