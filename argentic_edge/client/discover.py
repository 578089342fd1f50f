"""For agents: find an argentic-edge appliance on the LAN and get a messaging config for it.

    from argentic_edge.client.discover import find_edge

    edge = find_edge(timeout=3)
    if edge is not None:
        config["messaging"] = edge.messaging_config()

The first appliance to answer wins: on a LAN that is the nearest one (the lowest round trip).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from argentic_edge.bus.proxy import tcp_endpoint
from argentic_edge.discovery.browser import Browser
from argentic_edge.discovery.network import local_addresses, zeroconf_for
from argentic_edge.discovery.record import Peer
from argentic_edge.discovery.table import PeerTable


@dataclass(frozen=True)
class EdgeEndpoints:
    """Where an agent reaches one appliance's bus."""

    name: str
    node_id: str
    host: str
    port: int
    backend_port: int
    web_port: int

    @property
    def publish(self) -> str:
        """Publishers (PUB) connect here: the proxy's XSUB side."""
        return tcp_endpoint(self.host, self.port)

    @property
    def subscribe(self) -> str:
        """Subscribers (SUB) connect here: the proxy's XPUB side."""
        return tcp_endpoint(self.host, self.backend_port)

    def messaging_config(self) -> dict[str, Any]:
        """Argentic's ``messaging:`` block for this appliance (the agent starts no proxy)."""
        return {
            "protocol": "zeromq",
            "broker_address": self.host,
            "port": self.port,
            "backend_port": self.backend_port,
            "start_proxy": False,
            "proxy_mode": "external",
        }


def _best_address(peer: Peer) -> str:
    """This host's own address if the appliance runs here, else one on our subnet, else the
    first it advertises."""
    local = local_addresses()
    mine = {here.address for here in local}
    for address in peer.addresses:
        if address in mine:
            return address
    for address in peer.addresses:
        if any(ipaddress.IPv4Address(address) in here.network for here in local):
            return address
    return peer.addresses[0]


async def async_find_edge(
    timeout: float = 3.0, *, interfaces: Sequence[str] = ()
) -> EdgeEndpoints | None:
    """The first appliance that answers within ``timeout`` seconds, or None."""
    azc = zeroconf_for(interfaces)
    table = PeerTable()
    events = table.subscribe()
    browser = Browser(azc.zeroconf, table)
    try:
        await browser.start()
        try:
            event = await asyncio.wait_for(events.get(), timeout)
        except TimeoutError:
            return None
        peer = event.peer
        return EdgeEndpoints(peer.name, peer.id, _best_address(peer), peer.pub, peer.sub, peer.web)
    finally:
        events.close()
        await browser.stop()
        await azc.async_close()


def find_edge(timeout: float = 3.0, *, interfaces: Sequence[str] = ()) -> EdgeEndpoints | None:
    """Blocking ``async_find_edge``, for agents to call before they start their event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(async_find_edge(timeout, interfaces=interfaces))
    raise RuntimeError(
        "find_edge() blocks; inside an event loop use `await async_find_edge()` instead"
    )
