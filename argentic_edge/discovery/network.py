"""This host's side of discovery: which of a peer's addresses we may link to, and the zeroconf
instance on the configured interfaces (this host's LAN addresses come from interfaces.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from zeroconf import InterfaceChoice, InterfacesType, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from argentic_edge.config import ConfigError, Problem
from argentic_edge.discovery.interfaces import LocalAddress as LocalAddress
from argentic_edge.discovery.interfaces import is_internal as is_internal
from argentic_edge.discovery.interfaces import local_addresses as local_addresses
from argentic_edge.discovery.record import Peer


def link_addresses(peer: Peer, local: Sequence[LocalAddress]) -> list[str]:
    """The peer's advertised addresses that lie on one of our LAN subnets, in its order.

    A peer only makes us connect to an address it advertises itself, and only on a network we
    are attached to: a record cannot send us to the internet or to our own loopback.
    """
    return [
        text
        for text in peer.addresses
        if any(
            ipaddress.IPv4Address(text) in here.network and text != here.address for here in local
        )
    ]


def link_address(peer: Peer, local: Sequence[LocalAddress]) -> str | None:
    """The first of ``link_addresses``, or None."""
    return next(iter(link_addresses(peer, local)), None)


def zeroconf_for(interfaces: Sequence[str]) -> AsyncZeroconf:
    """An AsyncZeroconf on the configured interfaces (IPv4; every interface when none named).

    Problems are ConfigErrors naming the key, so the user sees a sentence, not a traceback.
    """
    choice: InterfacesType = InterfaceChoice.All
    if interfaces:
        choice = [here.address for here in local_addresses(interfaces)]
        if not choice:
            raise ConfigError(
                [
                    Problem(
                        "discovery.interfaces",
                        list(interfaces),
                        "these interfaces have no IPv4 address",
                    )
                ]
            )
    try:
        return AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    "discovery",
                    "enabled",
                    f"mDNS cannot open UDP port 5353 ({exc}); free it, or set "
                    "discovery.enabled: false",
                )
            ]
        ) from None
