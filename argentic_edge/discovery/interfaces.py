"""This host's LAN addresses: where peers (discovery) and agents on the LAN (the Bus card)
reach it. Apart from network.py so that listing them never imports zeroconf."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import ifaddr

from argentic_edge.config import ConfigError, Problem


@dataclass(frozen=True)
class LocalAddress:
    interface: str
    address: str
    network: ipaddress.IPv4Network


# Home Assistant's hassio bridge and Docker's default bridge: only this host reaches them.
INTERNAL_NETWORKS = (
    ipaddress.IPv4Network("172.30.32.0/23"),
    ipaddress.IPv4Network("172.17.0.0/16"),
)
# hassio, Docker bridges (docker0, br-<12 hex> user networks) and container veth ends.
INTERNAL_INTERFACE = re.compile(r"^(hassio|docker.*|veth.*|br-[0-9a-f]{12})$")


def is_internal(interface: str, address: ipaddress.IPv4Address) -> bool:
    """A host-only bridge (Home Assistant's hassio, Docker's): never announced, never linked."""
    return INTERNAL_INTERFACE.match(interface) is not None or any(
        address in network for network in INTERNAL_NETWORKS
    )


def local_addresses(interfaces: Sequence[str] = ()) -> list[LocalAddress]:
    """This host's IPv4 addresses: on the named interfaces, or on every LAN one (neither
    loopback nor a host-only container bridge, which peers cannot reach).

    Raises ConfigError naming discovery.interfaces when a named one does not exist.
    """
    adapters = {adapter.nice_name: adapter for adapter in ifaddr.get_adapters()}
    unknown = [name for name in interfaces if name not in adapters]
    if unknown:
        raise ConfigError(
            [
                Problem(
                    "discovery.interfaces",
                    list(interfaces),
                    f"no network interface named {', '.join(unknown)}; this "
                    f"host has {', '.join(sorted(adapters))}",
                )
            ]
        )
    found = []
    for name in interfaces or sorted(adapters):
        for ip in adapters[name].ips:
            if not isinstance(ip.ip, str):
                continue
            address = ipaddress.IPv4Address(ip.ip)
            if not interfaces and (address.is_loopback or is_internal(name, address)):
                continue
            network = ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
            found.append(LocalAddress(name, ip.ip, network))
    return found
