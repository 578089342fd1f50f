"""Browsing the LAN over mDNS: keep a PeerTable in step with what other appliances advertise.

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
import logging
import socket
import time
from collections import Counter

from zeroconf import (
    DNSAddress,
    DNSCache,
    DNSOutgoing,
    DNSQuestion,
    DNSQuestionType,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from argentic_edge.discovery.record import SERVICE_TYPE, Peer, RecordError, parse_record
from argentic_edge.discovery.table import PeerTable

log = logging.getLogger(__name__)

LOST_AFTER = 3  # silent liveness intervals
LOST_PROBE_MAX = 60.0  # seconds: the back-off of the probes of a lost peer stops growing here
MAX_CLAIMANTS = 8  # other names remembered per claimed id (a flood of copies stays bounded)
RESOLVE_TIMEOUT = 3.0
# DNS numbers (RFC 1035, RFC 2782) for the liveness query.
_DNS_QUERY_FLAGS = 0x0000
_DNS_TYPE_A = 1
_DNS_TYPE_TXT = 16
_DNS_TYPE_SRV = 33
_DNS_CLASS_IN = 1


def peer_from_info(info: ServiceInfo, now: float, cache: DNSCache | None = None) -> Peer:
    """A Peer from a resolved ServiceInfo; its addresses from ``cache`` when given."""
    addresses = (
        info.parsed_addresses(IPVersion.V4Only)
        if cache is None or not info.server
        else cached_addresses(cache, info.server)
    )
    return parse_record(info.name, info.properties, addresses, now)


def cached_addresses(cache: DNSCache, server: str) -> list[str]:
    """The IPv4 addresses ``cache`` holds for the host ``server``, newest first, without those
    an answer with the cache-flush bit declared invalid (RFC 6762 section 10.2). zeroconf keeps
    such a record one more second, and renews that second whenever another answer for the
    host arrives, even once it has expired: a forged address would outlive the real answer
    that replaced it for as long as the real peer kept answering."""
    now = current_time_millis()
    records = [
        r
        for r in cache.async_all_by_details(server, _DNS_TYPE_A, _DNS_CLASS_IN)
        if isinstance(r, DNSAddress) and not r.is_expired(now) and r.ttl > 1
    ]
    return [
        socket.inet_ntoa(r.address)
        for r in sorted(records, key=lambda r: -r.created)
        if len(r.address) == 4
    ]


class _Heard(RecordUpdateListener):
    """Every SRV/TXT record that arrives for a known instance proves that peer is alive; it,
    and an address record of the instance's host, may also say something new about it."""

    def __init__(self, browser: Browser) -> None:
        super().__init__()
        self.browser = browser

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
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

    def __init__(
        self,
        zc: Zeroconf,
        table: PeerTable,
        *,
        own_id: str | None = None,
        liveness_interval: float | None = None,
        workers: int = 4,
        max_pending: int = 256,
    ) -> None:
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
        self._tasks = [
            asyncio.create_task(self._resolve_forever(), name=f"mdns-resolve-{i}")
            for i in range(self._workers)
        ]
        if self.liveness_interval:
            self._tasks.append(asyncio.create_task(self._liveness(), name="mdns-liveness"))
        self.zc.async_add_listener(self._listener, None)
        # QM questions: answers come by multicast, so another mDNS stack on this host (Home
        # Assistant's, avahi) cannot swallow a unicast reply meant for us.
        self._browser = AsyncServiceBrowser(
            self.zc, SERVICE_TYPE, handlers=[self._on_change], question_type=DNSQuestionType.QM
        )

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
            log.warning(
                "discovery: ignoring an mDNS record (%s): %s; counting such records in the status",
                reason,
                detail,
            )
        else:
            log.debug("discovery: ignoring an mDNS record (%s): %s", reason, detail)

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
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
        if not await info.async_request(
            self.zc, int(RESOLVE_TIMEOUT * 1000), question_type=DNSQuestionType.QM
        ):
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
        displaced = [full for k, (full, pid) in self._names.items() if pid == peer.id and k != key]
        if displaced:  # its turn may come again, if this one cannot link either
            self._unproven.discard(peer.id)
            claimants = self._claimants.setdefault(peer.id, set())
            claimants.update(displaced[: MAX_CLAIMANTS - len(claimants)])
        self._names = {k: v for k, v in self._names.items() if v[1] != peer.id}
        self._names[key] = (name, peer.id)
        self._heard[key] = time.monotonic()
        self._forget_evicted()
        if before is None or before.state == "lost":
            log.info(
                "discovery: found %s (%s) at %s", peer.name, peer.id, ", ".join(peer.addresses)
            )
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
        self._count(
            "duplicate_id", f"{name!r} claims the id {peer.id} of the live peer {existing.name!r}"
        )
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
        return (
            self.liveness_interval is not None
            and time.monotonic() - self._heard.get(key, -float("inf"))
            <= self.liveness_interval * LOST_AFTER
        )

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
                agrees = info.load_from_cache(self.zc) and peer_from_info(
                    info, peer.last_seen, self.zc.cache
                ).same_record(peer)
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
            key, (now + self.liveness_interval, self.liveness_interval)
        )
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
