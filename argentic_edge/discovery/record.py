"""What an appliance's mDNS record says, parsed once at the edge into frozen values.

Every appliance advertises ``_argentic._tcp.local.`` with a TXT record saying who it is and
where its ports are (DESIGN.md, "Ports and names"). Records from the network are parsed here
into ``Peer`` values; anything malformed or absurd is refused with the counter it goes to.

A node's id is derived from its CURVE public key, so a record whose id does not match its key
is a lie. The id helpers live here, beside the record that checks them, so that discovery (and
the agents' ``find_edge()``) needs neither the bus nor the federation's authenticator.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from zeroconf import ServiceInfo
from zmq.utils import z85

from argentic_edge.config import Z85_KEY_PATTERN

SERVICE_TYPE = "_argentic._tcp.local."
FORMAT_VERSION = "1"
# TTL of every record we advertise; liveness probing, not expiry, is what detects a dead peer.
RECORD_TTL = 60

# Ports below this are never accepted from a record: an appliance has no use for privileged
# ports, and refusing them keeps a forged record from pointing us at a system service.
MIN_PORT = 1024
MAX_ADDRESSES = 8

PeerState = Literal["discovered", "trusted", "linked", "lost"]


class RecordError(ValueError):
    """A record from the network that we ignore; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """What an appliance's mDNS record says: its id and name, addresses, ports and keys.

    Ours is built from the configuration and advertised; others' are parsed from the network.
    """

    id: str
    name: str
    addresses: tuple[str, ...]
    pub: int
    sub: int
    fed: int
    web: int
    curve: str
    tls: str
    version: str

    def txt(self) -> dict[str, str]:
        txt = {
            "v": FORMAT_VERSION,
            "id": self.id,
            "ver": self.version,
            "pub": str(self.pub),
            "sub": str(self.sub),
            "web": str(self.web),
            "curve": self.curve,
            "tls": self.tls,
        }
        if self.fed:
            txt["fed"] = str(self.fed)
        return txt

    def service_info(self, instance: str) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            f"{instance}.{SERVICE_TYPE}",
            port=self.pub,
            properties=self.txt(),
            server=f"argentic-{self.id[:12]}.local.",
            addresses=[socket.inet_aton(a) for a in self.addresses],
            host_ttl=RECORD_TTL,
            other_ttl=RECORD_TTL,
        )


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


@dataclass(frozen=True)
class Peer(Record):
    """Another appliance on the LAN: its record, when we saw it, and what it is to us."""

    first_seen: float
    last_seen: float
    state: PeerState = "discovered"

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value: a flat copy, not dataclasses.asdict's recursive deep
        # copy, which was half the time of /api/status with a hundred peers.
        document = {name: getattr(self, name) for name in _PEER_FIELDS}
        document["addresses"] = list(self.addresses)
        document["linked"] = self.state == "linked"
        return document

    def same_record(self, other: Peer) -> bool:
        """True when only the bookkeeping (times, state) differs."""
        return all(getattr(self, name) == getattr(other, name) for name in _RECORD_FIELDS)


_PEER_FIELDS = tuple(f.name for f in fields(Peer))


def instance_name(full_name: str) -> str:
    """``kitchen (2)._argentic._tcp.local.`` → ``kitchen (2)``."""
    suffix = "." + SERVICE_TYPE
    if not full_name.lower().endswith(suffix.lower()):
        raise RecordError("malformed", f"{full_name!r} is not an {SERVICE_TYPE} instance")
    name = full_name[: -len(suffix)]
    if not 0 < len(name.encode("utf-8")) <= 63:
        raise RecordError("malformed", f"instance name {name!r} is empty or too long")
    return name


def _port(txt: Mapping[str, str], key: str, optional: bool) -> int:
    value = txt.get(key, "")
    if value in ("", "0") and optional:
        return 0
    if not re.fullmatch(r"\d{1,5}", value):
        raise RecordError("malformed", f"TXT {key}={value!r} is not a port number")
    port = int(value)
    if not MIN_PORT <= port <= 65535:
        raise RecordError("bad_port", f"TXT {key}={port} is outside {MIN_PORT}-65535")
    return port


def _usable_address(text: str) -> bool:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return not (
        address.is_loopback
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address == ipaddress.IPv4Address("255.255.255.255")
    )


def parse_record(
    full_name: str, properties: Mapping[bytes, bytes | None], addresses: Sequence[str], now: float
) -> Peer:
    """A Peer from an mDNS record's parts, or RecordError saying what is wrong with it."""
    name = instance_name(full_name)
    txt: dict[str, str] = {}
    for key, value in properties.items():
        try:
            txt[key.decode("ascii").lower()] = (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("malformed", f"TXT key {key!r} is not text") from None
    if "v" not in txt:
        raise RecordError("malformed", "TXT has no format version 'v'")
    if txt["v"] != FORMAT_VERSION:
        raise RecordError("unsupported_version", f"TXT v={txt['v']!r}, expected {FORMAT_VERSION}")
    peer_id, curve = txt.get("id", ""), txt.get("curve", "")
    if not is_node_id(peer_id):
        raise RecordError("malformed", f"TXT id={peer_id!r} is not 32 hex digits")
    if not is_curve_key(curve):
        raise RecordError("malformed", "TXT curve is not a Z85 CURVE public key")
    if node_id(curve) != peer_id:
        raise RecordError("malformed", f"TXT id={peer_id} does not match its CURVE key")
    ports = {
        key: _port(txt, key, optional=key in ("fed", "web")) for key in ("pub", "sub", "fed", "web")
    }
    used = [port for port in ports.values() if port]
    if len(set(used)) != len(used):
        raise RecordError("bad_port", f"TXT ports overlap: {ports}")
    tls = txt.get("tls", "").lower()
    if tls and not re.fullmatch(r"[0-9a-f]{64}", tls):
        raise RecordError("malformed", "TXT tls is not a SHA-256 fingerprint (64 hex digits)")
    version = txt.get("ver", "")
    if len(version) > 32 or not version.isprintable():
        raise RecordError("malformed", "TXT ver is longer than 32 characters or not printable")
    usable = tuple(dict.fromkeys(a for a in addresses if _usable_address(a)))[:MAX_ADDRESSES]
    if not usable:
        raise RecordError("malformed", f"no usable IPv4 address in {list(addresses)[:4]}")
    return Peer(
        id=peer_id,
        name=name,
        addresses=usable,
        version=version,
        curve=curve,
        tls=tls,
        pub=ports["pub"],
        sub=ports["sub"],
        fed=ports["fed"],
        web=ports["web"],
        first_seen=now,
        last_seen=now,
    )


def is_node_id(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", text) is not None


def is_curve_key(text: str) -> bool:
    return re.fullmatch(Z85_KEY_PATTERN, text) is not None


def node_id(public_key: str) -> str:
    """The stable node id: 128 bits of SHA-256 over the raw 32-byte CURVE public key."""
    return hashlib.sha256(z85.decode(public_key.encode("ascii"))).hexdigest()[:32]
