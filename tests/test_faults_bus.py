"""Faults around the bus: a subscriber that never reads must not cost memory or stall others."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import zmq

from tests.support.appliance import rss_kib
from tests.support.brokers import wait_for_port
from tests.support.config import config_document, write_yaml


def test_a_stuck_subscriber_costs_bounded_memory_and_stalls_no_one(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    raw = config_document(tmp_path / "data")
    config = write_yaml(tmp_path / "edge.yaml", raw)
    port, backend = raw["messaging"]["port"], raw["messaging"]["backend_port"]
    appliance = subprocess.Popen(
        [sys.executable, "-m", "argentic_edge", "run", "--config", str(config)],
        env=repo_env,
        stderr=subprocess.DEVNULL,
    )
    context = zmq.Context()
    try:
        wait_for_port(backend)
        stuck = context.socket(zmq.SUB)  # subscribes to everything and never reads
        stuck.setsockopt(zmq.RCVHWM, 10)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.subscribe(b"")
        stuck.connect(f"tcp://127.0.0.1:{backend}")
        healthy = context.socket(zmq.SUB)
        healthy.setsockopt(zmq.RCVHWM, 0)
        healthy.subscribe(b"load/")
        healthy.connect(f"tcp://127.0.0.1:{backend}")
        pub = context.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.connect(f"tcp://127.0.0.1:{port}")
        pub.recv()
        pub.recv()
        baseline = rss_kib(appliance.pid)

        payload = b"load/x " + b"x" * 1024
        total = received = 0
        deadline = time.monotonic() + 20  # bounded in count and time
        while total < 100_000 and time.monotonic() < deadline:
            for _ in range(1000):
                pub.send(payload)
            total += 1000
            while healthy.poll(0):  # the healthy subscriber keeps up as we go
                healthy.recv()
                received += 1
        while healthy.poll(2000):
            healthy.recv()
            received += 1
        grown_mib = (rss_kib(appliance.pid) - baseline) / 1024
        assert appliance.poll() is None, "the appliance is still running"
        assert grown_mib < 64, f"memory grew by {grown_mib:.1f} MiB for a stuck subscriber"
        assert total >= 20_000
        assert received >= total // 2, f"the healthy subscriber got {received} of {total}"
        for sock in (stuck, healthy, pub):
            sock.close(0)
    finally:
        context.term()
        appliance.terminate()
        appliance.wait(timeout=10)
    assert appliance.returncode == 0
