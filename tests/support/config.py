"""Configuration documents for tests and benchmarks: the one builder, and the one YAML writer.

Every test and bench builds its appliance's configuration here, so a new section or a changed
default is taught to one function: the bus on free loopback ports, optional services off,
nothing listening on a well-known port. Callers pass whole sections to turn services back on.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from argentic_edge.config import EdgeConfig, parse_config
from tests.support.brokers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "correct horse battery staple"
TOKEN = "tok-4f9a1c2e7b"
MQTT_PASSWORD = "mqtt-s3cret-pw"
SECRETS = (PASSWORD, TOKEN, MQTT_PASSWORD)


def fresh_data_dir() -> Path:
    """A data directory of its own for an in-process appliance: uplinks keep their outbox in
    it, and two appliances (or two tests) must never share one."""
    return Path(tempfile.mkdtemp(prefix="argentic-edge-data-"))


def config_document(
    data_dir: Path, *, node_name: str = "test-node", **sections: Any
) -> dict[str, Any]:
    """A raw configuration: the bus on free loopback ports, bridge, discovery, certificates
    and web off; each keyword replaces the whole section of that name."""
    document: dict[str, Any] = {
        "node_name": node_name,
        "data_dir": str(data_dir),
        "messaging": bus_section(),
        "bridge": {"enabled": False},
        "discovery": {"enabled": False},
        "certificates": {"enabled": False},
        "web": {"enabled": False},
    }
    document.update(sections)
    return document


def bus_section(port: int = 0, backend_port: int = 0, **options: Any) -> dict[str, Any]:
    """The messaging section: the bus on loopback, on the ports given (0: a free one), plus
    ``options``."""
    return {
        "broker_address": "127.0.0.1",
        "port": port or free_port(),
        "backend_port": backend_port or free_port(),
        **options,
    }


def web_section(**options: Any) -> dict[str, Any]:
    """The web section of an appliance a test talks to: loopback, a free port, the password
    and API token of this module (tests grep answers and logs for them)."""
    return {
        "host": "127.0.0.1",
        "port": free_port(),
        "password": PASSWORD,
        "api_token": TOKEN,
        **options,
    }


def write_yaml(path: Path, document: Mapping[str, Any] | str) -> Path:
    """A configuration file as a user keeps it: readable by its owner only, keys in the order
    given. A string is written as it stands (a hand-written file with its comments)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        document
        if isinstance(document, str)
        else yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
    )
    path.write_text(text)
    path.chmod(0o600)
    return path


def uplinks_only(data_dir: Path, *uplinks: dict[str, Any], node_name: str = "edge") -> EdgeConfig:
    """A parsed configuration with only the bus and these uplinks (no MQTT bridge, no Home
    Assistant), for the uplink tests and benchmarks."""
    return parse_config(
        config_document(
            data_dir,
            node_name=node_name,
            messaging=bus_section(),
            bridge={"enabled": False, "ha_discovery": False},
            uplinks=list(uplinks),
        ),
        env={},
    )
