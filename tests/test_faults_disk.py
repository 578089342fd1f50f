"""The data directory fills up, then turns read-only, under a running appliance.

The appliance (a child process) keeps its data dir and configuration file on a 2 MiB tmpfs the
test mounts. With the disk full, and again with it remounted read-only, the test saves a
configuration, approves a peer and makes the server certificate due. Each must fail with a
message naming the file and the error, keep the last good state (the running configuration,
the trust list, the certificate being served), and bus <-> broker traffic must go on.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
import zmq
import zmq.asyncio

from tests.support import disk
from tests.support.appliance import Appliance, appliance_document
from tests.support.bridge import MqttClient, message, wait_until
from tests.support.brokers import Mosquitto, free_port

FULL = "No space left on device (ENOSPC)"
READ_ONLY = "Read-only file system (EROFS)"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs under tmp_path."""
    with disk.small_disk(tmp_path / "disk") as mounted:
        yield mounted


def damage(path: Path) -> None:
    """Overwrite a file in place (no new block needed): the certificate is due at once."""
    with path.open("r+b", buffering=0) as handle:
        handle.write(b"x" * path.stat().st_size)


class Traffic:
    """An agent on the bus and a client on the broker, proving both directions still work."""

    def __init__(self, appliance: Appliance, mqtt: MqttClient) -> None:
        self.context = zmq.asyncio.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.sub = self.context.socket(zmq.SUB)
        for sock in (self.pub, self.sub):
            sock.setsockopt(zmq.LINGER, 0)
        self.pub.connect(appliance.bus_publish)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"agent/in/")
        self.sub.connect(appliance.bus_subscribe)
        self.mqtt = mqtt
        self.rounds = 0

    def close(self) -> None:
        self.pub.close()
        self.sub.close()
        self.context.term()

    async def prove(self, count: int = 20) -> None:
        """``count`` messages each way, all of them arriving (after a path probe)."""
        self.rounds += 1
        tag = f"r{self.rounds}"
        for _ in range(200):  # the bus path: zmq drops what it sends before subscriptions land
            await self.pub.send(f"agent/out/{tag}/probe ".encode() + message("probe"))
            try:
                item = await self.mqtt.receive(0.05)
            except TimeoutError:
                continue
            if item.topic == f"agent/out/{tag}/probe":
                break
        else:
            raise AssertionError("bus -> broker is down")
        await self.mqtt.drain_probes(0.1)
        self.mqtt.queue = asyncio.Queue()
        out = [message("out", i=i) for i in range(count)]
        for body in out:
            await self.pub.send(f"agent/out/{tag} ".encode() + body)
        got = [await self.mqtt.receive(5) for _ in out]
        assert [item.payload for item in got] == out
        into = [message("in", i=i) for i in range(count)]
        for body in into:
            await self.mqtt.publish(f"agent/in/{tag}", body, qos=1)
        frames = [await asyncio.wait_for(self.sub.recv(), 5) for _ in into]
        assert [frame.partition(b" ")[2] for frame in frames] == into


async def call(
    appliance: Appliance, method: str, path: str, body: bytes | None = None
) -> tuple[int, str]:
    code, answer = await asyncio.to_thread(
        appliance.request, method, path, body, "application/yaml"
    )
    return code, str(answer)  # a JSON error document or a text/plain reason


async def expect_refusals(appliance: Appliance, data: Path, reason: str) -> dict[str, Any]:
    """Save a configuration, approve a peer, make the certificate due: each refused, named."""
    before = await asyncio.to_thread(appliance.status)
    config_file = appliance.config_path
    stored = config_file.read_bytes()
    changed = dict(appliance.document, log_level="debug")
    code, text = await call(appliance, "PUT", "/api/config", yaml.safe_dump(changed).encode())
    assert code == 409 and str(config_file) in text and reason in text, text
    assert config_file.read_bytes() == stored

    peer_id = secrets.token_hex(16)
    code, text = await call(appliance, "POST", f"/api/peers/{peer_id}/approve")
    trust_file = data / "federation" / "trusted.json"
    assert code == 409 and str(trust_file) in text and reason in text, text

    status = await asyncio.to_thread(appliance.status)
    assert status["node"] == {**before["node"], "uptime": status["node"]["uptime"]}
    assert peer_id not in {entry["id"] for entry in status["peers"]["approved"]}
    return status


async def certificate_error(appliance: Appliance, server_pem: Path, reason: str) -> None:
    """The failed renewal shows in the status and in /healthz, naming the file and the error."""
    await wait_until(
        lambda: reason in str(appliance.status()["certificates"]["error"]),
        timeout=10,
        what=f"the certificate error {reason!r}",
    )
    code, health = await asyncio.to_thread(appliance.health)
    assert code == 503
    [text] = [r for r in health["reasons"] if r.startswith("certificates:")]
    assert f"{server_pem.parent}/server." in text and reason in text, text  # .key or .pem


async def test_a_full_then_read_only_data_dir_is_reported_and_traffic_goes_on(
    tmp_path: Path, small_disk: Path
) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    data = small_disk / "data"
    document = appliance_document(
        data,
        discovery={
            "interfaces": ["lo"],
            "liveness_interval": 1.0,
            "federation": {"export_port": free_port()},
        },
        certificates={"check_interval": 0.2},
        bridge={
            "enabled": True,
            "ha_discovery": False,
            "mqtt": {
                "broker_address": "127.0.0.1",
                "port": broker.port,
                "connect_retry_delay": 0.1,
            },
            "routes": [
                {"topic": "agent/out/#", "direction": "out", "qos": 1},
                {"topic": "agent/in/#", "direction": "in", "qos": 1},
            ],
        },
    )
    appliance = Appliance(data, document)
    appliance.log_path = tmp_path / "appliance.log"  # an open log would keep the disk busy
    server_pem = data / "certs" / "server.pem"
    try:
        await asyncio.to_thread(appliance.start)
        await asyncio.to_thread(appliance.wait_healthy)
        async with MqttClient(broker.port) as mqtt:
            await mqtt.subscribe("agent/out/#", qos=1)
            traffic = Traffic(appliance, mqtt)
            try:
                await traffic.prove()

                # --- the disk is full ---------------------------------------------------
                served = (await asyncio.to_thread(appliance.status))["certificates"]
                filler = disk.fill(small_disk)
                damage(server_pem)  # the next check issues it again, and cannot
                await expect_refusals(appliance, data, FULL)
                await certificate_error(appliance, server_pem, FULL)
                await traffic.prove()
                status = await asyncio.to_thread(appliance.status)
                assert status["certificates"]["certificates"] == served["certificates"]

                # --- and read-only ------------------------------------------------------
                disk.read_only(small_disk)
                await expect_refusals(appliance, data, READ_ONLY)
                await certificate_error(appliance, server_pem, READ_ONLY)
                await traffic.prove()

                # --- writable with space again: everything recovers by itself -----------
                disk.read_only(small_disk, on=False)
                filler.unlink()
                await wait_until(
                    lambda: appliance.health()[0] == 200, timeout=10, what="healthy again"
                )
                code, _ = await call(
                    appliance, "POST", f"/api/peers/{secrets.token_hex(16)}/approve"
                )
                assert code == 200
                changed = dict(appliance.document, log_level="debug")
                code, _ = await call(
                    appliance, "PUT", "/api/config", yaml.safe_dump(changed).encode()
                )
                assert code == 200
                await traffic.prove()
            finally:
                traffic.close()
    finally:
        disk.mount("-o", "remount,rw", str(small_disk))
        await asyncio.to_thread(appliance.stop)
        broker.stop()
