"""Shared fixtures: real brokers and free ports, nothing faked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import Mosquitto, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain Mosquitto on a free loopback port, anonymous access, persistence on."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[object]:
    """Build brokers with extra listener configuration (TLS, passwords); all stopped at the end."""
    started: list[Mosquitto] = []

    def make(extra_conf: list[str] | None = None, name: str = "broker") -> Mosquitto:
        broker = Mosquitto(tmp_path / name, extra_conf=list(extra_conf or []))
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


def free_bus_config(tmp_path: Path, **sections: object) -> dict[str, object]:
    """A raw configuration with the bus on free loopback ports and optional services off.

    Tests pass sections to turn services back on; nothing listens on a well-known port.
    """
    raw: dict[str, object] = {
        "node_name": "test-node",
        "data_dir": str(tmp_path / "data"),
        "messaging": {"broker_address": "127.0.0.1", "port": free_port(),
                      "backend_port": free_port()},
        "bridge": {"enabled": False},
        "discovery": {"enabled": False},
        "certificates": {"enabled": False},
        "web": {"enabled": False},
    }
    raw.update(sections)
    return raw


@pytest.fixture
def repo_env() -> dict[str, str]:
    """Environment for running ``python -m argentic_edge`` from this checkout in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("ARGENTIC_EDGE_DATA_DIR", None)
    return env
