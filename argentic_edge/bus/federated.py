"""The federated bus: three libzmq proxies, their peer links and the ZAP gatekeeper.

With federation on, the bus is three libzmq proxies joined by one inproc endpoint (DESIGN.md,
"The bus and federation"):

- **L**: XSUB :5555 (local publishers) → XPUB inproc://…-local
- **M**: XSUB connected to inproc://…-local and to every linked peer's export port → XPUB :5556
- **E**: XSUB connected to inproc://…-local → XPUB :5557 (CURVE server; ZAP lets trusted keys in)

Local traffic reaches local subscribers (through M) and peers (through E); what comes from a
peer enters M only, so it reaches local subscribers and never goes back out: a one-hop full mesh
without loops, and no Python touches a message.

The bus is handed this node's keys and the policy its gatekeeper applies (the federation package
makes both: ``federation.identity``, ``federation.trust``); it knows neither files nor trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message, recv_monitor_message

from argentic_edge.bus.proxy import (
    BusError,
    BusStatus,
    ProxyBus,
    ProxyStats,
    ProxyThread,
    apply_socket_options,
    bind_or_explain,
    closed_monitor,
    tcp_endpoint,
)
from argentic_edge.config import BusConfig, FederationConfig, Secret

log = logging.getLogger(__name__)

ZAP_DOMAIN = "argentic-edge-federation"
# A refused link is retried after this many seconds, doubling up to the maximum: libzmq does
# not reconnect by itself after a ZAP refusal, and the other side may approve us at any time.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# How often a link whose peer went silent is retried by libzmq (ms).
RECONNECT_IVL = 250
RECONNECT_IVL_MAX = 5000


class NodeKeys(Protocol):
    """This node's CURVE key pair, as the bus uses it (``federation.identity.CurveKeys``)."""

    @property
    def public(self) -> str: ...

    @property
    def secret(self) -> Secret: ...

    @property
    def node_id(self) -> str: ...


class KeyPolicy(Protocol):
    """Which client keys the gatekeeper lets into the export port (``federation.trust``).
    Swapped whole, never edited, so the authenticator thread reads one consistent policy."""

    def allows(self, key: str) -> bool: ...

    def describe(self, key: str) -> str:
        """How a refused key is named in the log."""
        ...


@dataclass(frozen=True)
class LinkTarget:
    """Where a trusted peer exports its local traffic, and the key its export port must show."""

    endpoint: str
    server_key: str


@dataclass
class Link:
    """One peer connection of M, as libzmq's monitor reports it."""

    target: LinkTarget
    state: str = "connecting"  # connecting | up | refused | failed
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LinkStatus:
    """One link in the status document."""

    endpoint: str
    state: str
    since: float


@dataclass(frozen=True)
class ZapCounters:
    """What the gatekeeper let in and refused since start."""

    allowed: int
    denied: int


@dataclass(frozen=True)
class FederationStatus:
    """The federation part of the bus status, while the proxies are not running."""

    node_id: str
    export_port: int
    links: dict[str, LinkStatus]
    zap: ZapCounters


@dataclass(frozen=True)
class FederationTraffic(FederationStatus):
    """The federation part of the bus status with the proxies running: traffic and counters."""

    from_peers: int
    to_peers: int
    proxies: dict[str, ProxyStats]


@dataclass(frozen=True)
class FederatedBusStatus(BusStatus):
    """The bus status with federation on."""

    federation: FederationStatus


_LINK_EVENTS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "up",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
    zmq.EVENT_DISCONNECTED: "connecting",
}

LinkListener = Callable[[str, str], None]
# (client key, allowed): every handshake at the export port, on the event loop
HandshakeListener = Callable[[str, bool], None]


class _ZapPolicy:
    """The authenticator's callback: reads the current KeyPolicy, counts, and hands each
    result to the handshake listener on the event loop (the peers service, which names the
    peer); without one, logs a refused key once."""

    def __init__(self, policy: KeyPolicy) -> None:
        self.policy = policy
        self.allowed = 0
        self.denied = 0
        self.listener: tuple[asyncio.AbstractEventLoop, HandshakeListener] | None = None
        self._logged: set[str] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        text = key.decode("ascii", "replace")
        allowed = self.policy.allows(text)
        if allowed:
            self.allowed += 1
        else:
            self.denied += 1
        listener = self.listener
        if listener is not None:
            loop, call = listener
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                loop.call_soon_threadsafe(call, text, allowed)
        elif not allowed:
            self._log_refused(text)
        return allowed

    def _log_refused(self, text: str) -> None:
        if text not in self._logged and len(self._logged) < 256:
            self._logged.add(text)
            log.warning(
                "federation: refused a peer connection from node %s: not trusted",
                self.policy.describe(text),
            )


class FederatedBus(ProxyBus):
    """The bus with federation: the L, M and E proxies, their gatekeeper and their links.

    Same face as ``proxy.Bus`` (start/stop/mode/endpoints/stats). ``mode`` is ``federated``
    when the three proxies run; if the bus ports are held by another answering proxy it is
    ``reused`` (as with the plain Bus) and there is no federation. ``keys`` are this node's
    CURVE pair; ``policy`` the gatekeeper's first policy (swap it through ``policy``).
    """

    local_mode = "federated"

    def __init__(
        self,
        config: BusConfig,
        federation: FederationConfig,
        keys: NodeKeys,
        policy: KeyPolicy,
        context: zmq.Context[Any],
    ) -> None:
        super().__init__(config, context, "fed")
        self.federation = federation
        self.keys = keys
        self.links: dict[str, Link] = {}
        self._zap = _ZapPolicy(policy)
        self._auth: ThreadAuthenticator | None = None
        self._proxies: dict[str, ProxyThread] = {}
        self._listeners: list[LinkListener] = []
        self._monitor_task: asyncio.Task[None] | None = None
        self._local = f"inproc://argentic-edge-fed-local-{self._instance}"
        self._monitor_endpoint = f"inproc://argentic-edge-fed-monitor-{self._instance}"
        self._export_endpoint = ""

    @property
    def federating(self) -> bool:
        return self.mode == "federated"

    @property
    def export_port(self) -> int:
        return self.federation.export_port if self.federating else 0

    @property
    def policy(self) -> KeyPolicy:
        return self._zap.policy

    @policy.setter
    def policy(self, policy: KeyPolicy) -> None:
        self._zap.policy = policy

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._start_sync)
        if self.federating:
            self._monitor_task = asyncio.create_task(
                self._watch_links(), name="federation-link-monitor"
            )

    def _start_sync(self) -> None:
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger(f"{__name__}.zap"))
        try:
            self._auth.start()
        except zmq.ZMQError as exc:
            self._auth = None
            raise BusError(
                f"federation: cannot start the ZAP gatekeeper ({exc}); only one may "
                "run per ZeroMQ context"
            ) from None
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._zap)
        try:
            self._proxies = self._build()
        except BusError as taken:
            self._stop_auth()
            self._use_answering_proxy(
                taken, "without federation (federation needs this node's own proxies)"
            )
            return
        except BaseException:
            self._stop_auth()
            raise
        for proxy in self._proxies.values():
            proxy.start()
        self.mode = "federated"
        log.info(
            "bus: publishers connect to %s, subscribers to %s; federation export on %s "
            "(node id %s)",
            tcp_endpoint(self.config.broker_address, self.config.port),
            tcp_endpoint(self.config.broker_address, self.config.backend_port),
            tcp_endpoint(self.config.broker_address, self.federation.export_port),
            self.keys.node_id,
        )

    def _build(self) -> dict[str, ProxyThread]:
        """Bind and connect the six sockets; on any failure close what was opened."""
        config = self.config
        opened: list[zmq.Socket[Any]] = []

        def socket(kind: int) -> zmq.Socket[Any]:
            sock: zmq.Socket[Any] = self.context.socket(kind)
            opened.append(sock)
            apply_socket_options(sock, config)
            return sock

        try:
            l_front, l_back = socket(zmq.XSUB), socket(zmq.XPUB)
            self._bind_frontend(l_front)
            l_back.bind(self._local)

            m_front, m_back = socket(zmq.XSUB), socket(zmq.XPUB)
            self._bind_backend(m_back)
            m_front.connect(self._local)
            # Keys are set after the inproc connect: options are captured per connection,
            # and only the peer connections made later use CURVE.
            m_front.curve_publickey = self.keys.public.encode()
            m_front.curve_secretkey = self.keys.secret.reveal().encode()
            m_front.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL)
            m_front.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX)
            m_front.setsockopt(zmq.HEARTBEAT_IVL, 2000)
            m_front.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
            m_front.monitor(self._monitor_endpoint, sum(_LINK_EVENTS))

            e_front, e_back = socket(zmq.XSUB), socket(zmq.XPUB)
            e_front.connect(self._local)
            e_back.curve_server = True
            e_back.curve_secretkey = self.keys.secret.reveal().encode()
            e_back.zap_domain = ZAP_DOMAIN.encode()
            e_back.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            e_back.setsockopt(zmq.HEARTBEAT_IVL, 2000)
            e_back.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
            bind_or_explain(
                e_back,
                tcp_endpoint(config.broker_address, self.federation.export_port),
                "federation export port (discovery.federation.export_port)",
            )
            self._export_endpoint = e_back.get_string(zmq.LAST_ENDPOINT)
        except BaseException:
            for sock in opened:
                sock.close(linger=0)
            raise
        return {
            "local": ProxyThread(self.context, l_front, l_back, "fed-local"),
            "merge": ProxyThread(self.context, m_front, m_back, "fed-merge"),
            "export": ProxyThread(self.context, e_front, e_back, "fed-export"),
        }

    def stats(self) -> ProxyStats | None:
        """What local publishers sent (L's frontend) and local subscribers got (M's backend)."""
        if not self._proxies:
            return None
        local = self._proxies["local"].statistics()
        merge = self._proxies["merge"].statistics()
        return ProxyStats(local.frontend, merge.backend)

    def proxy_stats(self) -> dict[str, ProxyStats]:
        return {name: proxy.statistics() for name, proxy in self._proxies.items()}

    def federation_status(self) -> FederationStatus:
        links = {
            peer_id: LinkStatus(link.target.endpoint, link.state, link.since)
            for peer_id, link in self.links.items()
        }
        zap = ZapCounters(self._zap.allowed, self._zap.denied)
        if not self._proxies:
            return FederationStatus(self.keys.node_id, self.export_port, links, zap)
        stats = self.proxy_stats()
        local_out = stats["local"].backend.messages_out
        return FederationTraffic(
            self.keys.node_id,
            self.export_port,
            links,
            zap,
            from_peers=max(0, stats["merge"].frontend.messages_in - local_out),
            to_peers=stats["export"].backend.messages_out,
            proxies=stats,
        )

    def status(self) -> FederatedBusStatus:
        base = super().status()
        return FederatedBusStatus(
            base.mode, base.publish, base.subscribe, base.counters, self.federation_status()
        )

    async def stop(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            await asyncio.gather(self._monitor_task, return_exceptions=True)
            self._monitor_task = None
        await asyncio.get_running_loop().run_in_executor(None, self._stop_sync)

    def _stop_sync(self) -> None:
        # The export port closes before the gatekeeper goes: without a ZAP handler libzmq
        # would let any CURVE client in.
        for name in ("export", "merge", "local"):
            proxy = self._proxies.get(name)
            if proxy is not None:
                proxy.stop(release=self._releaser(proxy))
        self._stop_auth()
        self.links.clear()
        self.mode = "stopped"

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    # links

    def add_link_listener(self, listener: LinkListener) -> None:
        self._listeners.append(listener)

    def remove_link_listener(self, listener: LinkListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch_handshakes(self, listener: HandshakeListener | None) -> None:
        """Tell ``listener`` (called on the running loop) of every handshake at the export
        port: which key, and whether it was let in. None stops."""
        self._zap.listener = None if listener is None else (asyncio.get_running_loop(), listener)

    def link_state(self, peer_id: str) -> str | None:
        link = self.links.get(peer_id)
        return link.state if link is not None else None

    async def set_links(self, targets: Mapping[str, LinkTarget]) -> None:
        """Make M connect to exactly these peers (one proxy pause for all changes)."""
        if not self.federating:
            return
        drop = [peer for peer, link in self.links.items() if targets.get(peer) != link.target]
        add = {
            peer: target
            for peer, target in targets.items()
            if peer not in self.links or peer in drop
        }
        if not drop and not add:
            return
        removed = [self.links[peer].target for peer in drop]
        for peer in drop:
            del self.links[peer]
        for peer, target in add.items():
            self.links[peer] = Link(target)
        await self._reconnect(removed, list(add.values()))
        for peer in drop:
            log.info("federation: unlinked peer %s", peer)
        for peer, target in add.items():
            log.info("federation: linking peer %s at %s", peer, target.endpoint)

    async def retry(self, peer_ids: Iterable[str]) -> None:
        """Connect again to peers that refused us (libzmq gives up after a ZAP refusal), or
        whose link never came up."""
        known = [peer for peer in peer_ids if peer in self.links]
        targets = [self.links[peer].target for peer in known]
        for peer in known:
            self.links[peer].state = "connecting"
        if targets and self.federating:
            await self._reconnect(targets, targets)

    async def revoke(self) -> None:
        """Drop every peer connection to our export port, so each must pass ZAP again.

        ZAP runs only at the handshake: after a peer is forgotten, its open connection would
        keep pulling our traffic. Rebinding the port ends all of them; trusted peers reconnect
        within a few hundred milliseconds (messages queued for them meanwhile are lost).
        """
        if not self.federating:
            return
        endpoint = self._export_endpoint

        def rebind(frontend: zmq.Socket[Any], backend: zmq.Socket[Any]) -> None:
            # libzmq closes the listener in its IO thread; bind again once it says it did.
            closed = closed_monitor(backend)
            try:
                backend.unbind(endpoint)
                if not closed.poll(5000):
                    raise BusError(f"federation: {endpoint} did not close within 5 s")
                recv_monitor_message(closed)
            finally:
                backend.disable_monitor()
                closed.close(linger=0)
            bind_or_explain(
                backend, endpoint, "federation export port (discovery.federation.export_port)"
            )

        export = self._proxies["export"]
        await asyncio.get_running_loop().run_in_executor(None, export.reconfigure, rebind)
        log.info(
            "federation: dropped every peer connection to %s; trusted peers reconnect", endpoint
        )

    async def _reconnect(self, removed: list[LinkTarget], added: list[LinkTarget]) -> None:
        def change(frontend: zmq.Socket[Any], backend: zmq.Socket[Any]) -> None:
            for target in removed:
                with contextlib.suppress(zmq.ZMQError):  # never connected, or already gone
                    frontend.disconnect(target.endpoint)
            for target in added:
                # Captured per connection: each peer's export port gets its own server key.
                frontend.curve_serverkey = target.server_key.encode()
                frontend.connect(target.endpoint)

        merge = self._proxies["merge"]
        await asyncio.get_running_loop().run_in_executor(None, merge.reconfigure, change)

    async def _watch_links(self) -> None:
        """Turn libzmq's monitor events on M into link states (and tell the listeners)."""
        actx = zmq.asyncio.Context.shadow(self.context.underlying)
        monitor = actx.socket(zmq.PAIR)
        monitor.setsockopt(zmq.LINGER, 0)
        monitor.connect(self._monitor_endpoint)
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                    return
                state = _LINK_EVENTS.get(event["event"])
                endpoint = event["endpoint"].decode("utf-8", "replace")
                for peer_id, link in self.links.items():
                    if link.target.endpoint != endpoint or state is None or link.state == state:
                        continue
                    if state == "connecting" and link.state in ("refused", "failed"):
                        continue  # the disconnect that follows a refusal; only retry() resumes
                    link.state, link.since = state, time.time()
                    if state in ("refused", "failed"):  # the listeners log it, by name
                        log.debug("federation: peer %s: link %s (%s)", peer_id, state, endpoint)
                    for listener in list(self._listeners):
                        listener(peer_id, state)
        finally:
            monitor.close()
