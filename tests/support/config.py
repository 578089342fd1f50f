"""Configuration documents for tests: the bus on free loopback ports, optional services off."""

from __future__ import annotations

from pathlib import Path

from tests.support.brokers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


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
