"""Where an agent on the LAN connects to the bus, and the Argentic configuration that does it.

The bus endpoints in the status (``tcp://127.0.0.1:5555``) are where this host's own clients
connect; a bus bound to every address (``0.0.0.0``) is reached from the LAN at this host's
interface addresses instead. ``bus_connect`` names those, and writes the ``messaging:`` block an
Argentic agent uses to reach them (the seed's ZeroMQ keys, as in its external-proxy example:
the appliance runs the proxy, the agent only connects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from argentic_edge.config import BusConfig

EVERY_ADDRESS = frozenset({"0.0.0.0", "*", "::", ""})


@dataclass(frozen=True)
class BusConnect:
    """``bus.connect`` in the status document: where agents connect, and a copyable config."""

    addresses: list[str]
    messaging_yaml: str


def bus_connect(config: BusConfig, lan: Sequence[str]) -> BusConnect:
    """Given this host's LAN addresses ``lan``: the addresses agents can use (every LAN
    address when the bus listens on all of them, else the one it is bound to or reaches)
    and a ``messaging:`` block for the first."""
    if config.broker_address in EVERY_ADDRESS:
        addresses = list(dict.fromkeys(lan)) or ["127.0.0.1"]
    else:
        addresses = [config.broker_address]
    block = {
        "messaging": {
            "protocol": "zeromq",
            "broker_address": addresses[0],
            "port": config.port,
            "backend_port": config.backend_port,
            "start_proxy": False,
            "proxy_mode": "external",
        }
    }
    return BusConnect(addresses, yaml.safe_dump(block, sort_keys=False))
