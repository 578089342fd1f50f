"""LAN discovery over mDNS: advertise this appliance, browse for the others, keep a PeerTable.

Every appliance advertises ``_argentic._tcp.local.`` with a TXT record saying who it is and
where its ports are (DESIGN.md, "Ports and names"). Records from the network are parsed once,
at the edge, into frozen ``Peer`` values; anything malformed or absurd is dropped and counted.

Liveness: python-zeroconf raises the TTL of every PTR record it receives to at least 1125 s,
so a node that dies without a goodbye would stay "present" for ~19 minutes. The browser
therefore asks for each peer's SRV record whenever the peer has been silent for one
``liveness_interval`` and marks it lost after three silent intervals.

mDNS is unauthenticated, so nothing one answer says is final: a lost peer (silent, or said
goodbye: a goodbye can be forged) is still asked, with back-off, and found again when it
answers; a peer whose answers disagree with the table is resolved again; and the name that
holds an id keeps it while it answers, whatever a goodbye said.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import ifaddr
from zeroconf import (
    DNSAddress,
    DNSCache,
    DNSOutgoing,
    DNSQuestion,
    DNSQuestionType,
    InterfaceChoice,
    InterfacesType,
    IPVersion,
    NonUniqueNameException,
    RecordUpdate,
    RecordUpdateListener,
    ServiceInfo,
    ServiceNameAlreadyRegistered,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from argentic_edge.bus.federated import is_curve_key, is_node_id, node_id
from argentic_edge.config import ConfigError, Problem
from argentic_edge.errors import EdgeError

log = logging.getLogger(__name__)

SERVICE_TYPE = "_argentic._tcp.local."
FORMAT_VERSION = "1"
# TTL of every record we advertise; liveness probing, not expiry, is what detects a dead peer.
RECORD_TTL = 60
# Ports below this are never accepted from a record: an appliance has no use for privileged
# ports, and refusing them keeps a forged record from pointing us at a system service.
MIN_PORT = 1024
LOST_AFTER = 3  # silent liveness intervals
LOST_PROBE_MAX = 60.0  # seconds: the back-off of the probes of a lost peer stops growing here
MAX_ADDRESSES = 8
MAX_CLAIMANTS = 8  # other names remembered per claimed id (a flood of copies stays bounded)
RESOLVE_TIMEOUT = 3.0
RENAME_ATTEMPTS = 16
# DNS numbers (RFC 1035, RFC 2782) for the liveness query.
_DNS_QUERY_FLAGS = 0x0000
_DNS_TYPE_A = 1
_DNS_TYPE_TXT = 16
_DNS_TYPE_SRV = 33
_DNS_CLASS_IN = 1

PeerState = Literal["discovered", "trusted", "linked", "lost"]


class DiscoveryError(EdgeError):
    """Advertising failed at runtime (no free name): logged by the service, never fatal."""


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
        txt = {"v": FORMAT_VERSION, "id": self.id, "ver": self.version,
               "pub": str(self.pub), "sub": str(self.sub), "web": str(self.web),
               "curve": self.curve, "tls": self.tls}
        if self.fed:
            txt["fed"] = str(self.fed)
        return txt

    def service_info(self, instance: str) -> ServiceInfo:
        return ServiceInfo(SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}", port=self.pub,
                           properties=self.txt(), server=f"argentic-{self.id[:12]}.local.",
                           addresses=[socket.inet_aton(a) for a in self.addresses],
                           host_ttl=RECORD_TTL, other_ttl=RECORD_TTL)


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


# --- records ---------------------------------------------------------------------------------

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
    return not (address.is_loopback or address.is_multicast or address.is_unspecified
                or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255"))


def parse_record(full_name: str, properties: Mapping[bytes, bytes | None],
                 addresses: Sequence[str], now: float) -> Peer:
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
    ports = {key: _port(txt, key, optional=key in ("fed", "web"))
             for key in ("pub", "sub", "fed", "web")}
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
    return Peer(id=peer_id, name=name, addresses=usable, version=version, curve=curve, tls=tls,
                first_seen=now, last_seen=now, **ports)


def peer_from_info(info: ServiceInfo, now: float, cache: DNSCache | None = None) -> Peer:
    """A Peer from a resolved ServiceInfo; its addresses from ``cache`` when given."""
    addresses = (info.parsed_addresses(IPVersion.V4Only) if cache is None or not info.server
                 else cached_addresses(cache, info.server))
    return parse_record(info.name, info.properties, addresses, now)


def cached_addresses(cache: DNSCache, server: str) -> list[str]:
    """The IPv4 addresses ``cache`` holds for the host ``server``, newest first, without those
    an answer with the cache-flush bit declared invalid (RFC 6762 section 10.2). zeroconf keeps
    such a record one more second, and renews that second whenever another answer for the
    host arrives, even once it has expired: a forged address would outlive the real answer
    that replaced it for as long as the real peer kept answering."""
    now = current_time_millis()
    records = [r for r in cache.async_all_by_details(server, _DNS_TYPE_A, _DNS_CLASS_IN)
               if isinstance(r, DNSAddress) and not r.is_expired(now) and r.ttl > 1]
    return [socket.inet_ntoa(r.address) for r in sorted(records, key=lambda r: -r.created)
            if len(r.address) == 4]


# --- the peer table --------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerEvent:
    kind: Literal["added", "updated", "removed"]
    peer: Peer


class PeerEvents:
    """One subscriber's bounded queue of table changes. When it overflows, the oldest event
    goes (and is counted): a slow reader must never hold the table or grow memory."""

    def __init__(self, table: PeerTable, maxsize: int) -> None:
        self._table = table
        self._queue: asyncio.Queue[PeerEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _put(self, event: PeerEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> PeerEvent:
        return await self._queue.get()

    def get_nowait(self) -> PeerEvent | None:
        return None if self._queue.empty() else self._queue.get_nowait()

    def __aiter__(self) -> AsyncIterator[PeerEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PeerEvent]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        self._table._subscribers.discard(self)


class PeerTable:
    """The peers we know, by id, at most ``max_peers`` of them, with an event stream.

    When full, a new peer takes the place of the lost peer seen longest ago; if no peer is
    lost, the newcomer is refused and counted (a flood of fake records cannot grow memory).
    """

    def __init__(self, max_peers: int = 64) -> None:
        self.max_peers = max_peers
        self.refused = 0
        self._peers: dict[str, Peer] = {}
        self._subscribers: set[PeerEvents] = set()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: (p.name.lower(), p.id))

    def subscribe(self, maxsize: int = 256) -> PeerEvents:
        events = PeerEvents(self, maxsize)
        self._subscribers.add(events)
        return events

    def _emit(self, kind: Literal["added", "updated", "removed"], peer: Peer) -> None:
        for subscriber in list(self._subscribers):
            subscriber._put(PeerEvent(kind, peer))

    def upsert(self, peer: Peer) -> Peer | None:
        """Record what the network just told us. A lost peer that answers is discovered again;
        otherwise its state is kept. None if the table is full."""
        existing = self._peers.get(peer.id)
        if existing is None:
            if len(self._peers) >= self.max_peers and not self._evict():
                self.refused += 1
                return None
            self._peers[peer.id] = peer
            self._emit("added", peer)
            return peer
        state: PeerState = "discovered" if existing.state == "lost" else existing.state
        merged = replace(peer, first_seen=existing.first_seen, state=state)
        self._peers[peer.id] = merged
        if not merged.same_record(existing) or merged.state != existing.state:
            self._emit("updated", merged)
        return merged

    def _evict(self) -> bool:
        lost = [p for p in self._peers.values() if p.state == "lost"]
        if not lost:
            return False
        self.remove(min(lost, key=lambda p: p.last_seen).id)
        return True

    def touch(self, peer_id: str, when: float) -> None:
        """The peer answered: move last_seen, without an event (that would be every probe)."""
        peer = self._peers.get(peer_id)
        if peer is not None and peer.state != "lost":
            self._peers[peer_id] = replace(peer, last_seen=when)

    def set_state(self, peer_id: str, state: PeerState) -> Peer | None:
        peer = self._peers.get(peer_id)
        if peer is None or peer.state == state:
            return peer
        changed = replace(peer, state=state)
        self._peers[peer_id] = changed
        self._emit("updated", changed)
        return changed

    def remove(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            self._emit("removed", peer)


# --- interfaces ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalAddress:
    interface: str
    address: str
    network: ipaddress.IPv4Network


# Home Assistant's hassio bridge and Docker's default bridge: only this host reaches them.
INTERNAL_NETWORKS = (ipaddress.IPv4Network("172.30.32.0/23"), ipaddress.IPv4Network("172.17.0.0/16"))
# hassio, Docker bridges (docker0, br-<12 hex> user networks) and container veth ends.
INTERNAL_INTERFACE = re.compile(r"^(hassio|docker.*|veth.*|br-[0-9a-f]{12})$")


def is_internal(interface: str, address: ipaddress.IPv4Address) -> bool:
    """A host-only bridge (Home Assistant's hassio, Docker's): never announced, never linked."""
    return (INTERNAL_INTERFACE.match(interface) is not None
            or any(address in network for network in INTERNAL_NETWORKS))


def local_addresses(interfaces: Sequence[str] = ()) -> list[LocalAddress]:
    """This host's IPv4 addresses: on the named interfaces, or on every LAN one (neither
    loopback nor a host-only container bridge, which peers cannot reach).

    Raises ConfigError naming discovery.interfaces when a named one does not exist.
    """
    adapters = {adapter.nice_name: adapter for adapter in ifaddr.get_adapters()}
    unknown = [name for name in interfaces if name not in adapters]
    if unknown:
        raise ConfigError([Problem("discovery.interfaces", list(interfaces),
                                   f"no network interface named {', '.join(unknown)}; this "
                                   f"host has {', '.join(sorted(adapters))}")])
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


def link_addresses(peer: Peer, local: Sequence[LocalAddress]) -> list[str]:
    """The peer's advertised addresses that lie on one of our LAN subnets, in its order.

    A peer only makes us connect to an address it advertises itself, and only on a network we
    are attached to: a record cannot send us to the internet or to our own loopback.
    """
    return [text for text in peer.addresses
            if any(ipaddress.IPv4Address(text) in here.network and text != here.address
                   for here in local)]


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
            raise ConfigError([Problem("discovery.interfaces", list(interfaces),
                                       "these interfaces have no IPv4 address")])
    try:
        return AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise ConfigError([Problem("discovery", "enabled",
                                   f"mDNS cannot open UDP port 5353 ({exc}); free it, or set "
                                   "discovery.enabled: false")]) from None


# --- browsing --------------------------------------------------------------------------------

class _Heard(RecordUpdateListener):
    """Every SRV/TXT record that arrives for a known instance proves that peer is alive; it,
    and an address record of the instance's host, may also say something new about it."""

    def __init__(self, browser: Browser) -> None:
        super().__init__()
        self.browser = browser

    def async_update_records(self, zc: Zeroconf, now: float,
                             records: list[RecordUpdate]) -> None:
        for update in records:
            record = update.new
            if record.is_expired(now):
                continue
            if record.type in (_DNS_TYPE_SRV, _DNS_TYPE_TXT):
                self.browser._heard_from(record.key)
            elif record.type == _DNS_TYPE_A:
                for service in zc.cache.async_entries_with_server(record.name):
                    self.browser._heard_from(service.key)

    def async_update_records_complete(self) -> None:
        """The batch is in the cache now: compare it with the table."""
        self.browser._recheck()


class Browser:
    """Keeps ``table`` in step with what the LAN advertises.

    Names the browser reports are resolved by a few workers through a bounded queue (a flood
    of names is dropped and counted, not queued forever); each record is parsed and checked
    before it reaches the table.
    """

    def __init__(self, zc: Zeroconf, table: PeerTable, *, own_id: str | None = None,
                 liveness_interval: float | None = None, workers: int = 4,
                 max_pending: int = 256) -> None:
        self.zc = zc
        self.table = table
        self.own_id = own_id
        self.liveness_interval = liveness_interval
        self.counters: Counter[str] = Counter()
        self._queue: asyncio.Queue[str] = asyncio.Queue(max_pending)
        self._pending: set[str] = set()
        self._names: dict[str, tuple[str, str]] = {}  # instance key → (full name, peer id)
        self._heard: dict[str, float] = {}  # instance key → monotonic time
        # Other names that claimed the id of a live peer: resolved again once it is lost and
        # no longer answers.
        self._claimants: dict[str, set[str]] = {}  # peer id → full names
        self._touched: set[str] = set()  # instance keys heard in the current batch
        self._lost_probes: dict[str, tuple[float, float]] = {}  # key → (next probe, gap)
        self._unproven: set[str] = set()  # ids whose holder did not complete a handshake
        self._logged: set[str] = set()
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._browser: AsyncServiceBrowser | None = None
        self._listener = _Heard(self)
        self.first_answer = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._resolve_forever(), name=f"mdns-resolve-{i}")
                       for i in range(self._workers)]
        if self.liveness_interval:
            self._tasks.append(asyncio.create_task(self._liveness(), name="mdns-liveness"))
        self.zc.async_add_listener(self._listener, None)
        # QM questions: answers come by multicast, so another mDNS stack on this host (Home
        # Assistant's, avahi) cannot swallow a unicast reply meant for us.
        self._browser = AsyncServiceBrowser(self.zc, SERVICE_TYPE, handlers=[self._on_change],
                                            question_type=DNSQuestionType.QM)

    async def stop(self) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        self.zc.async_remove_listener(self._listener)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _count(self, reason: str, detail: str) -> None:
        self.counters[reason] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("discovery: ignoring an mDNS record (%s): %s; counting such records "
                        "in the status", reason, detail)
        else:
            log.debug("discovery: ignoring an mDNS record (%s): %s", reason, detail)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            known = self._names.get(name.lower())
            if known is not None and known[1] in self.table:
                self._lost(known[1], "said goodbye")
            return
        self._enqueue(name)

    def _enqueue(self, name: str) -> None:
        if name in self._pending:
            return
        if self._queue.full():
            self._count("overflow", f"too many records waiting to be resolved; dropped {name!r}")
            return
        self._pending.add(name)
        self._queue.put_nowait(name)

    async def _resolve_forever(self) -> None:
        while True:
            name = await self._queue.get()
            try:
                await self._resolve(name)
            except Exception:
                log.exception("discovery: resolving %r failed", name)
            finally:
                self._pending.discard(name)

    async def _resolve(self, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self.zc, int(RESOLVE_TIMEOUT * 1000),
                                        question_type=DNSQuestionType.QM):
            self._count("unresolved", f"{name!r} did not answer within {RESOLVE_TIMEOUT:g}s")
            return
        try:
            peer = peer_from_info(info, time.time(), self.zc.cache)
        except RecordError as exc:
            self._count(exc.reason, f"{name!r}: {exc}")
            return
        if peer.id == self.own_id:
            return
        key = name.lower()
        if self._claimed_elsewhere(key, name, peer):
            return
        self._lost_probes.pop(key, None)
        previous = self._names.get(key)
        if previous is not None and previous[1] != peer.id and previous[1] in self.table:
            self._lost(previous[1], f"its name {peer.name!r} now belongs to {peer.id}")
        before = self.table.get(peer.id)
        stored = self.table.upsert(peer)
        if stored is None:
            self._count("table_full", f"already {self.table.max_peers} peers; refused {name!r}")
            return
        displaced = [full for k, (full, pid) in self._names.items()
                     if pid == peer.id and k != key]
        if displaced:  # its turn may come again, if this one cannot link either
            self._unproven.discard(peer.id)
            claimants = self._claimants.setdefault(peer.id, set())
            claimants.update(displaced[:MAX_CLAIMANTS - len(claimants)])
        self._names = {k: v for k, v in self._names.items() if v[1] != peer.id}
        self._names[key] = (name, peer.id)
        self._heard[key] = time.monotonic()
        self._forget_evicted()
        if before is None or before.state == "lost":
            log.info("discovery: found %s (%s) at %s", peer.name, peer.id,
                     ", ".join(peer.addresses))
        self.first_answer.set()

    def _claimed_elsewhere(self, key: str, name: str, peer: Peer) -> bool:
        """True (and counted) when another instance name already holds ``peer.id`` and is
        alive. An id and its key are public (every record shows them), so anyone on the LAN
        can copy them into a record of its own with its own address: first come keeps the
        id, or a copy would move our link away from the real peer (the CURVE handshake would
        then fail: a copy can never link, but it could cut the real peer off). The holder
        keeps the id while it answers, even after a goodbye (anyone can send one in its
        name), unless it failed the CURVE handshake (``link_result``); a real peer that
        changes its name stops answering under the old one, and then the claim is heard."""
        holder = next((k for k, (_, pid) in self._names.items() if pid == peer.id), None)
        existing = self.table.get(peer.id)
        if holder is None or holder == key or existing is None or peer.id in self._unproven:
            return False
        if existing.state == "lost" and not self._answering(holder):
            return False
        claimants = self._claimants.setdefault(peer.id, set())
        if len(claimants) < MAX_CLAIMANTS:
            claimants.add(name)
        self._count("duplicate_id", f"{name!r} claims the id {peer.id} of the live peer "
                                    f"{existing.name!r}")
        return True

    def _forget_evicted(self) -> None:
        for key in [k for k, (_, peer_id) in self._names.items() if peer_id not in self.table]:
            del self._names[key]
            self._heard.pop(key, None)
        for peer_id in [p for p in self._claimants if p not in self.table]:
            del self._claimants[peer_id]
        for key in [k for k in self._lost_probes if k not in self._names]:
            del self._lost_probes[key]
        self._unproven = {peer_id for peer_id in self._unproven if peer_id in self.table}

    def link_result(self, peer_id: str, proven: bool) -> None:
        """What linking to the name that holds ``peer_id`` showed. An id and its key are
        public, so the holder may be a copy; only the real peer holds the secret key and
        completes the CURVE handshake. While the holder has not proven itself, the other
        names that claim the id are heard; one that links keeps it."""
        if proven:
            self._unproven.discard(peer_id)
        elif peer_id in self.table and peer_id not in self._unproven:
            self._unproven.add(peer_id)
            self._release(peer_id)

    def _answering(self, key: str) -> bool:
        """Heard from within the silence that makes a peer lost (always False without
        liveness probing: then nothing asks, and a goodbye is all we know)."""
        return (self.liveness_interval is not None and time.monotonic()
                - self._heard.get(key, -float("inf")) <= self.liveness_interval * LOST_AFTER)

    def _heard_from(self, key: str) -> None:
        known = self._names.get(key)
        if known is None:
            return
        self._heard[key] = time.monotonic()
        peer = self.table.get(known[1])
        if peer is None:
            return
        if peer.state == "lost":
            self._enqueue(known[0])  # it is back: resolve it again
        else:
            self.table.touch(peer.id, time.time())
            self._touched.add(key)

    def _recheck(self) -> None:
        """Resolve again every peer heard in this batch whose records in the cache now say
        something else than the table: one forged answer moves the table, and the real
        peer's next answer (to our probes) moves it back."""
        touched, self._touched = self._touched, set()
        for key in touched:
            known = self._names.get(key)
            peer = self.table.get(known[1]) if known is not None else None
            if known is None or peer is None:
                continue
            info = AsyncServiceInfo(SERVICE_TYPE, known[0])
            try:
                agrees = (info.load_from_cache(self.zc)
                          and peer_from_info(info, peer.last_seen, self.zc.cache)
                          .same_record(peer))
            except RecordError:
                agrees = False  # _resolve says what is wrong with it, and counts it
            if not agrees:
                self._enqueue(known[0])

    def _lost(self, peer_id: str, why: str) -> None:
        peer = self.table.get(peer_id)
        if peer is not None and peer.state != "lost":
            self.table.set_state(peer_id, "lost")
            log.info("discovery: lost %s (%s): %s", peer.name, peer_id, why)
            if self.liveness_interval is None:
                self._release(peer_id)

    def _release(self, peer_id: str) -> None:
        for name in self._claimants.pop(peer_id, ()):
            self._enqueue(name)  # the id is free: the other claim may be the real one

    async def _liveness(self) -> None:
        assert self.liveness_interval is not None
        interval = self.liveness_interval
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            for key, (name, peer_id) in list(self._names.items()):
                peer = self.table.get(peer_id)
                if peer is None:
                    continue
                if peer.state == "lost":
                    self._probe_lost(key, name, peer_id, now)
                    continue
                self._lost_probes.pop(key, None)
                silent = now - self._heard.get(key, now)
                if silent > interval * LOST_AFTER:
                    self._lost(peer_id, f"silent for {silent:.1f}s")
                elif silent >= interval:
                    self._probe(name)

    def _probe_lost(self, key: str, name: str, peer_id: str, now: float) -> None:
        """A lost peer is still asked, at growing gaps (one liveness interval at first, at
        most LOST_PROBE_MAX): a forged goodbye must not lose a live peer for good. Once it has
        stopped answering, other names that claim its id are heard."""
        assert self.liveness_interval is not None
        due, gap = self._lost_probes.setdefault(
            key, (now + self.liveness_interval, self.liveness_interval))
        if now >= due:
            self._probe(name)
            gap = min(gap * 2, LOST_PROBE_MAX)
            self._lost_probes[key] = (now + gap, gap)
        if peer_id in self._claimants and not self._answering(key):
            self._release(peer_id)

    def _probe(self, name: str) -> None:
        """Ask for the peer's SRV record, bypassing our cache: only the peer itself answers."""
        out = DNSOutgoing(_DNS_QUERY_FLAGS)
        out.add_question(DNSQuestion(name, _DNS_TYPE_SRV, _DNS_CLASS_IN))
        self.zc.async_send(out)


# --- advertising -----------------------------------------------------------------------------

class Advertiser:
    """Registers our Record, renaming on a conflict as mDNS asks ("name (2)"), and keeps it
    current: ``refresh()`` re-reads the advert (addresses, certificate) and re-announces."""

    def __init__(self, azc: AsyncZeroconf, source: Callable[[], Record]) -> None:
        self.azc = azc
        self.source = source
        self.registered: ServiceInfo | None = None
        self.advert: Record | None = None

    @property
    def name(self) -> str | None:
        return instance_name(self.registered.name) if self.registered else None

    async def refresh(self) -> None:
        advert = self.source()
        if advert == self.advert:
            return
        if not advert.addresses:
            if self.advert is None:
                log.warning("discovery: no IPv4 address to advertise yet; will advertise "
                            "when one appears")
                self.advert = advert
            return
        if self.registered is not None and self.advert is not None \
                and advert.name == self.advert.name:
            info = advert.service_info(instance_name(self.registered.name))
            await self.azc.async_update_service(info)
            self.registered, self.advert = info, advert
            log.info("discovery: advertisement updated (%s)", ", ".join(advert.addresses))
            return
        if self.registered is not None:
            await self.azc.async_unregister_service(self.registered)
            self.registered = None
        self.registered = await self._register(advert)
        self.advert = advert

    async def _register(self, advert: Record) -> ServiceInfo:
        for attempt in range(1, RENAME_ATTEMPTS + 1):
            instance = advert.name if attempt == 1 else f"{advert.name} ({attempt})"
            info = advert.service_info(instance)
            try:
                await self.azc.async_register_service(info)
            except (NonUniqueNameException, ServiceNameAlreadyRegistered):
                log.warning("discovery: the name %r is taken on this LAN; trying another",
                            instance)
                continue
            log.info("discovery: advertising %r on %s", instance, ", ".join(advert.addresses))
            return info
        raise DiscoveryError(f"no free mDNS name after {RENAME_ATTEMPTS} tries of "
                             f"{advert.name!r}; set a distinct node_name")

    async def stop(self) -> None:
        """Say goodbye, so peers drop us at once instead of waiting for the liveness check."""
        if self.registered is not None:
            await self.azc.async_unregister_all_services()
            log.info("discovery: said goodbye as %r", self.name)
            self.registered = None
