"""The "peers" service: discovery, trust and federation links, kept in step with each other.

Discovery fills the PeerTable; this service decides, for every peer, what it should be:
trusted or not (TrustStore), linked or not (the FederatedBus's M proxy), and tells the bus's
gatekeeper which keys may pull our traffic. It does so by reconciling the whole (bounded) table
whenever anything changes (a record, an approval, a link event), which keeps the logic
level-triggered: whatever the order of events, the next pass puts things right.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from argentic_edge import __version__
from argentic_edge.bus.federated import RETRY_FIRST, RETRY_MAX, FederatedBus, LinkTarget
from argentic_edge.bus.proxy import tcp_endpoint
from argentic_edge.config import BusConfig, DiscoveryConfig
from argentic_edge.discovery.advertiser import Advertiser
from argentic_edge.discovery.browser import Browser
from argentic_edge.discovery.network import (
    LocalAddress,
    link_address,
    link_addresses,
    local_addresses,
    zeroconf_for,
)
from argentic_edge.discovery.record import Peer, PeerState, Record
from argentic_edge.discovery.table import PeerTable
from argentic_edge.federation.identity import CurveKeys, FederationError
from argentic_edge.federation.trust import DENY_ALL, TrustStore

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 30.0  # seconds between checks of our addresses and certificate
# libzmq reconnects by itself at most every 5 s (RECONNECT_IVL_MAX); a link to a live peer still
# not up after that is connected anew (seen once in CI: a link that stayed "connecting" for 20 s
# without a single handshake event, while both nodes were up and trusted each other).
STUCK_AFTER = 5.0


class PeersService:
    """mDNS advertise/browse plus trust and federation links, as one Edge service."""

    name = "peers"

    def __init__(
        self,
        config: DiscoveryConfig,
        *,
        node_name: str,
        bus_config: BusConfig,
        web_port: int,
        keys: CurveKeys,
        trust: TrustStore,
        bus: FederatedBus | None,
    ) -> None:
        """``web_port`` is advertised (0: no web); ``bus`` is the federated bus whose links
        this service keeps, None when federation is off (then peers are only discovered)."""
        self.config = config
        self.node_name = node_name
        self.bus_config = bus_config
        self.web_port = web_port
        self.table = PeerTable(self.config.max_peers)
        self.bus = bus
        self.keys = keys
        self.trust = trust
        self.fingerprint: Callable[[], str] | None = None
        self._local: list[LocalAddress] = []
        self._azc: Any = None
        self._browser: Browser | None = None
        self._advertiser: Advertiser | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._stuck_at: dict[str, float] = {}
        self._proven: dict[str, str] = {}  # peer id → endpoint that last completed a handshake
        # peer id → when (unix time) it last tried to link to us and was refused: not trusted
        self._requests: dict[str, float] = {}
        self._told: set[str] = set()  # peers whose refusal of our link was logged (once)
        self._strangers: set[str] = set()  # undiscovered keys refused at our port, logged once

    @property
    def federating(self) -> bool:
        return self.bus is not None and self.bus.federating

    # lifecycle

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.trust.load)
        self._local = local_addresses(self.config.interfaces)
        self._azc = zeroconf_for(self.config.interfaces)
        try:
            self._browser = Browser(
                self._azc.zeroconf,
                self.table,
                own_id=self.keys.node_id,
                liveness_interval=self.config.liveness_interval,
            )
            await self._browser.start()
            self._advertiser = Advertiser(self._azc, self._advert)
            if self.bus is not None:
                self.bus.add_link_listener(self._on_link)
                self.bus.watch_handshakes(self._on_handshake)
            self._tasks = [
                asyncio.create_task(self._reconcile_forever(), name="peers-reconcile"),
                asyncio.create_task(self._advertise_forever(), name="peers-advertise"),
            ]
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.bus is not None:
            self.bus.remove_link_listener(self._on_link)
            self.bus.watch_handshakes(None)
            if self.federating:
                await self.bus.set_links({})
            self.bus.policy = DENY_ALL
        if self._advertiser is not None:
            await self._advertiser.stop()
            self._advertiser = None
        if self._browser is not None:
            await self._browser.stop()
            self._browser = None
        if self._azc is not None:
            await self._azc.async_close()
            self._azc = None

    def health(self) -> tuple[bool, str]:
        if self._azc is None or not self._azc.zeroconf.started:
            return False, "mDNS is not running"
        if self._advertiser is None or self._advertiser.registered is None:
            return True, "mDNS browsing; not advertised yet (no IPv4 address or still probing)"
        return True, f"advertised as {self._advertiser.name!r}"

    # advertising

    def set_fingerprint_provider(self, provider: Callable[[], str] | None) -> None:
        """Where the ``tls`` TXT value comes from (the certificates service); re-advertised
        at the next refresh, or at once through ``refresh_advertisement()``."""
        self.fingerprint = provider

    async def refresh_advertisement(self) -> None:
        if self._advertiser is not None:
            await self._advertiser.refresh()

    def _advert(self) -> Record:
        self._local = local_addresses(self.config.interfaces)
        addresses = tuple(
            dict.fromkeys(
                a.address for a in self._local if not a.network.network_address.is_loopback
            )
        )
        tls = ""
        if self.fingerprint is not None:
            try:
                tls = self.fingerprint() or ""
            except Exception:
                log.exception("discovery: the certificate fingerprint provider failed")
        return Record(
            id=self.keys.node_id,
            name=self.node_name,
            pub=self.bus_config.port,
            sub=self.bus_config.backend_port,
            fed=self.bus.export_port if self.bus is not None else 0,
            web=self.web_port,
            curve=self.keys.public,
            tls=tls,
            version=__version__,
            addresses=addresses,
        )

    async def _advertise_forever(self) -> None:
        assert self._advertiser is not None
        while True:
            try:
                await self._advertiser.refresh()
            except Exception as exc:
                log.error("discovery: advertising failed: %s", exc)
            await asyncio.sleep(REFRESH_INTERVAL)

    # trust

    async def approve(self, peer_id: str) -> dict[str, Any]:
        """Trust a peer (the web API's approve button); persisted. Returns the peer's dict."""
        peer = self.table.get(peer_id)
        key, name = (peer.curve, peer.name) if peer is not None else (None, "")
        await asyncio.get_running_loop().run_in_executor(
            None, self.trust.approve, peer_id, key, name
        )
        log.info("federation: approved peer %s (%s)", name or "not seen yet", peer_id)
        self._requests.pop(peer_id, None)
        return await self._after_trust_change(peer_id)

    async def forget(self, peer_id: str) -> dict[str, Any]:
        """Withdraw an approval: the link goes, and the peer's key no longer passes ZAP."""
        removed = await asyncio.get_running_loop().run_in_executor(None, self.trust.forget, peer_id)
        if not removed:
            raise FederationError(f"peer {peer_id} was not approved")
        log.info("federation: no longer trusting peer %s", peer_id)
        document = await self._after_trust_change(peer_id)
        if self.bus is not None:
            await self.bus.revoke()
        return document

    async def _after_trust_change(self, peer_id: str) -> dict[str, Any]:
        await self._reconcile()
        peer = self.table.get(peer_id)
        return self._peer_dict(peer) if peer is not None else {"id": peer_id, "state": None}

    # reconciling

    def _on_link(self, peer_id: str, state: str) -> None:
        """Refused or failed links are retried with back-off; links still connecting after
        STUCK_AFTER seconds are made again (see ``_reconcile``). Discovery hears whether the
        peer proved its key: only a completed handshake does (a refusal is an unencrypted
        ERROR command, which anyone can send). A refusal is logged once, by the peer's name,
        until the link comes up: every retry is refused the same way until it approves us."""
        if self._browser is not None and state in ("up", "refused", "failed"):
            self._browser.link_result(peer_id, proven=state == "up")
        if state == "up":
            self._backoff.pop(peer_id, None)
            self._retry_at.pop(peer_id, None)
            link = self.bus.links.get(peer_id) if self.bus is not None else None
            if link is not None:
                self._proven[peer_id] = link.target.endpoint
            if peer_id in self._told:
                self._told.discard(peer_id)
                log.info("federation: linked with %s", self._named(peer_id))
        elif state in ("refused", "failed"):
            delay = self._backoff.get(peer_id, RETRY_FIRST)
            self._retry_at[peer_id] = time.monotonic() + delay
            self._backoff[peer_id] = min(delay * 2, RETRY_MAX)
            if peer_id not in self._told:
                self._told.add(peer_id)
                log.warning(
                    "federation: %s %s; retrying until it does",
                    self._named(peer_id),
                    f"has not approved this node yet (it sees a link request from {self.node_name})"
                    if state == "refused"
                    else "did not complete the link handshake",
                )
        self._wake.set()

    def _on_handshake(self, key: str, allowed: bool) -> None:
        """A peer connected to our export port. Refused (not trusted): a link request, shown
        on its card and logged once by name. Let in while our own link to it was refused:
        it has just approved us, so our link is tried again now, not after the back-off."""
        peer = next((p for p in self.table.peers() if p.curve == key), None)
        if allowed:
            if peer is not None:
                self._retry_now(peer.id)
            return
        if peer is None:
            if key not in self._strangers and len(self._strangers) < self.config.max_peers:
                self._strangers.add(key)
                log.warning(
                    "federation: refused a link from node %s: not discovered on this LAN "
                    "and not trusted",
                    DENY_ALL.describe(key),
                )
            return
        if peer.id not in self._requests:
            log.warning(
                "federation: %s wants to link with this node; approve it on the status "
                "page (Peers) to link",
                self._named(peer.id),
            )
        self._requests[peer.id] = time.time()

    def _retry_now(self, peer_id: str) -> None:
        """Connect to ``peer_id`` at the next reconcile pass, back-off forgotten."""
        self._backoff.pop(peer_id, None)
        if self._link_state(peer_id) in ("refused", "failed"):
            self._retry_at[peer_id] = time.monotonic()
            self._wake.set()

    def _link_state(self, peer_id: str) -> str | None:
        """The state of our link to ``peer_id`` (None: no link, or no federation)."""
        return self.bus.link_state(peer_id) if self.bus is not None else None

    def _named(self, peer_id: str) -> str:
        """A peer as log lines name it: its name and address, then its id."""
        peer = self.table.get(peer_id)
        if peer is None:
            return f"peer {peer_id}"
        where = link_address(peer, self._local) or ", ".join(peer.addresses) or "no address"
        return f"{peer.name} ({where}, id {peer_id})"

    async def _reconcile_forever(self) -> None:
        events = self.table.subscribe()
        try:
            while True:
                await self._reconcile()
                timeout = None
                if self._retry_at or self._stuck_at:
                    soonest = min([*self._retry_at.values(), *self._stuck_at.values()])
                    timeout = max(0.0, soonest - time.monotonic())
                waiter = asyncio.create_task(events.get())
                woken = asyncio.create_task(self._wake.wait())
                try:
                    await asyncio.wait(
                        {waiter, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waiter.cancel()
                    woken.cancel()
                self._wake.clear()
                while events.get_nowait() is not None:
                    pass  # one pass covers every change queued so far
        finally:
            events.close()

    async def _reconcile(self) -> None:
        """One pass: the links, the states and the ZAP policy the table calls for."""
        peers = self.table.peers()
        if self.bus is not None and self.federating:
            self.bus.policy = self.trust.policy({p.id: p.curve for p in peers if p.state != "lost"})
            targets = {p.id: target for p in peers if (target := self._target(p)) is not None}
            await self.bus.set_links(targets)
            now = time.monotonic()
            for peer_id in targets:  # a link that never comes up is made again
                if self.bus.link_state(peer_id) != "connecting":
                    self._stuck_at.pop(peer_id, None)
                elif peer_id not in self._stuck_at:
                    self._stuck_at[peer_id] = now + STUCK_AFTER
            for peer_id in [p for p in self._stuck_at if p not in targets]:
                del self._stuck_at[peer_id]
            stuck = [p for p, at in self._stuck_at.items() if at <= now]
            for peer_id in stuck:
                del self._stuck_at[peer_id]
                if self._browser is not None:
                    self._browser.link_result(peer_id, proven=False)
            due = [p for p, at in self._retry_at.items() if at <= now and p in targets]
            for peer_id in list(self._retry_at):
                if peer_id not in targets or peer_id in due:
                    self._retry_at.pop(peer_id)
            for peer_id in [p for p in self._backoff if p not in targets]:
                del self._backoff[peer_id]  # bounded by the links we have, not by history
            for peer_id in [p for p in self._proven if p not in self.table]:
                del self._proven[peer_id]
            for peer_id in [p for p in self._told if p not in targets]:
                self._told.discard(peer_id)
            if due or stuck:
                await self.bus.retry([*due, *stuck])
        for peer_id in [
            p
            for p in self._requests
            if (peer := self.table.get(p)) is None or self.trust.trusts(p, peer.curve)
        ]:
            del self._requests[peer_id]  # bounded by the table; answered by trusting it
        for peer in self.table.peers():  # afresh: the table may have moved during the awaits
            state = self._state(peer)
            if state != peer.state:
                self.table.set_state(peer.id, state)
                log.info("peers: %s (%s) is now %s", peer.name, peer.id, state)

    def _target(self, peer: Peer) -> LinkTarget | None:
        """Where to link: a link that is up stays where it is (its CURVE handshake proved the
        peer is there; an mDNS answer proves nothing); otherwise the advertised endpoint
        that last completed a handshake, else the first advertised one."""
        if peer.state == "lost" or not peer.fed or not self.trust.trusts(peer.id, peer.curve):
            return None
        link = self.bus.links.get(peer.id) if self.bus is not None else None
        if link is not None and link.state == "up" and link.target.server_key == peer.curve:
            return link.target
        endpoints = [tcp_endpoint(a, peer.fed) for a in link_addresses(peer, self._local)]
        if not endpoints:
            return None
        proven = self._proven.get(peer.id)
        return LinkTarget(proven if proven in endpoints else endpoints[0], peer.curve)

    def _state(self, peer: Peer) -> PeerState:
        if peer.state == "lost":
            return "lost"
        if self.bus is not None and self.bus.link_state(peer.id) == "up":
            return "linked"
        return "trusted" if self.trust.trusts(peer.id, peer.curve) else "discovered"

    # status

    def _peer_status(self, peer: Peer) -> PeerStatus:
        return PeerStatus(
            id=peer.id,
            name=peer.name,
            addresses=list(peer.addresses),
            pub=peer.pub,
            sub=peer.sub,
            fed=peer.fed,
            web=peer.web,
            curve=peer.curve,
            tls=peer.tls,
            version=peer.version,
            first_seen=peer.first_seen,
            last_seen=peer.last_seen,
            state=peer.state,
            linked=peer.state == "linked",
            trust=self.trust.source(peer.id, peer.curve),
            link=self._link_state(peer.id),
            link_address=link_address(peer, self._local),
            link_request=self._requests.get(peer.id),
        )

    def _peer_dict(self, peer: Peer) -> dict[str, Any]:
        return asdict(self._peer_status(peer))

    def status(self) -> PeersStatus:
        browser = self._browser
        counters = dict(browser.counters) if browser is not None else {}
        counters["table_full"] = self.table.refused
        if self.bus is not None:
            counters["zap_denied"] = self.bus.federation_status().zap.denied
        return PeersStatus(
            node_id=self.keys.node_id,
            name=self._advertiser.name if self._advertiser else None,
            curve_public_key=self.keys.public,
            trust=self.config.federation.trust,
            federation=self.federating,
            export_port=self.bus.export_port if self.bus is not None else 0,
            addresses=[AddressStatus(a.interface, a.address, str(a.network)) for a in self._local],
            peers=[self._peer_status(p) for p in self.table.peers()],
            approved=[
                ApprovalStatus(a.peer_id, a.key, a.name, a.approved_at)
                for a in self.trust.approvals()
            ],
            counters=counters,
        )


@dataclass(frozen=True)
class AddressStatus:
    """One of this host's addresses discovery uses."""

    interface: str
    address: str
    network: str


@dataclass(frozen=True)
class PeerStatus:
    """A peer as the status shows it: its record, what it is to us, and the link."""

    id: str
    name: str
    addresses: list[str]
    pub: int
    sub: int
    fed: int
    web: int
    curve: str
    tls: str
    version: str
    first_seen: float
    last_seen: float
    state: PeerState
    linked: bool
    trust: str | None
    link: str | None
    link_address: str | None
    # when it last asked to link (its key was refused: we do not trust it); None: no request
    link_request: float | None


@dataclass(frozen=True)
class ApprovalStatus:
    """A runtime approval, as the status shows it."""

    id: str
    key: str | None
    name: str
    approved_at: float


@dataclass(frozen=True)
class PeersStatus:
    """The peers service's status document."""

    node_id: str
    name: str | None
    curve_public_key: str
    trust: str
    federation: bool
    export_port: int
    addresses: list[AddressStatus]
    peers: list[PeerStatus]
    approved: list[ApprovalStatus]
    counters: dict[str, int]
