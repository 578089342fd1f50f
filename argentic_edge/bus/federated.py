"""Federation: this node's CURVE identity, which peers it trusts, and the three-proxy bus.

With federation on, the bus is three libzmq proxies joined by one inproc endpoint (DESIGN.md,
"The bus and federation"):

- **L**: XSUB :5555 (local publishers) → XPUB inproc://…-local
- **M**: XSUB connected to inproc://…-local and to every linked peer's export port → XPUB :5556
- **E**: XSUB connected to inproc://…-local → XPUB :5557 (CURVE server; ZAP lets trusted keys in)

Local traffic reaches local subscribers (through M) and peers (through E); what comes from a
peer enters M only, so it reaches local subscribers and never goes back out: a one-hop full mesh
without loops, and no Python touches a message.

A node's id is derived from its CURVE public key, so trusting an id is trusting a key: ZAP can
check an id it has never seen advertised, and a record whose id does not match its key is a lie.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message, recv_monitor_message

from argentic_edge.bus.proxy import (
    BusEndpoints,
    BusError,
    ProxyStats,
    ProxyThread,
    apply_socket_options,
    bind_or_explain,
    connect_host,
    probe_proxy,
    tcp_endpoint,
)
from argentic_edge.config import Z85_KEY_PATTERN, BusConfig, FederationConfig, Secret
from argentic_edge.storage import atomic_write, describe_os_error

log = logging.getLogger(__name__)

KEY_FILE = "curve.json"
TRUST_FILE = "trusted.json"
ZAP_DOMAIN = "argentic-edge-federation"
# A refused link is retried after this many seconds, doubling up to the maximum: libzmq does
# not reconnect by itself after a ZAP refusal, and the other side may approve us at any time.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# How often a link whose peer went silent is retried by libzmq (ms).
RECONNECT_IVL = 250
RECONNECT_IVL_MAX = 5000

_instance_ids = itertools.count(1)


class FederationError(BusError):
    """A federation file is unusable, or a trust change is not possible as asked.

    A BusError: federation is part of the bus, and the CLI explains bus errors to the user."""


def is_node_id(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", text) is not None


def is_curve_key(text: str) -> bool:
    return re.fullmatch(Z85_KEY_PATTERN, text) is not None


def node_id(public_key: str) -> str:
    """The stable node id: 128 bits of SHA-256 over the raw 32-byte CURVE public key."""
    return hashlib.sha256(z85.decode(public_key.encode("ascii"))).hexdigest()[:32]


# --- the node's key pair ---------------------------------------------------------------------

@dataclass(frozen=True)
class CurveKeys:
    """This node's CURVE key pair (Z85 text). The secret never shows in a repr or a log."""

    public: str
    secret: Secret

    @property
    def node_id(self) -> str:
        return node_id(self.public)


def load_or_create_keys(directory: Path) -> CurveKeys:
    """The key pair stored in ``directory``, created (0600, atomically) on first use.

    A damaged file is an error, not a reason to make a new pair: that would silently change the
    node's id and break every approval other nodes have made.
    """
    path = directory / KEY_FILE
    if not path.exists():
        public, secret = zmq.curve_keypair()
        document = {"public": public.decode(), "secret": secret.decode()}
        atomic_write(path, json.dumps(document, indent=2) + "\n", mode=0o600)
        log.info("federation: created this node's key pair in %s (node id %s)",
                 path, node_id(public.decode()))
        return CurveKeys(public.decode(), Secret(secret.decode()))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        public, secret = document["public"], document["secret"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FederationError(f"{path}: unreadable key file ({type(exc).__name__}); restore it "
                              "from a backup, or delete it to give this node a new id") from None
    if not (isinstance(public, str) and isinstance(secret, str) and is_curve_key(public)
            and is_curve_key(secret)):
        raise FederationError(f"{path}: expected 'public' and 'secret' CURVE keys in Z85 form")
    if zmq.curve_public(secret.encode()).decode() != public:
        raise FederationError(f"{path}: the public key does not belong to the secret key")
    if path.stat().st_mode & 0o077:
        log.warning("federation: %s was readable by others; making it private (0600)", path)
        path.chmod(0o600)
    return CurveKeys(public, Secret(secret))


# --- trust ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyPolicy:
    """Which client keys ZAP lets into the export port. Immutable: swapped, never edited, so
    the authenticator thread always reads one consistent policy."""

    keys: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        return key in self.keys or (is_curve_key(key) and node_id(key) in self.ids)


DENY_ALL = KeyPolicy()


@dataclass(frozen=True)
class Approval:
    """A peer approved at runtime (the web API's approve): persisted across restarts."""

    peer_id: str
    key: str | None
    name: str
    approved_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.peer_id, "key": self.key, "name": self.name,
                "approved_at": self.approved_at}


class TrustStore:
    """The peers this node trusts: ``trusted_peers`` from the configuration plus approvals made
    at runtime, which live in ``<data_dir>/federation/trusted.json``.

    ``open`` mode trusts every peer found on the LAN; the connection is still encrypted and ZAP
    still admits only keys that were advertised over mDNS.
    """

    def __init__(self, config: FederationConfig, directory: Path) -> None:
        self.mode = config.trust
        self.path = directory / TRUST_FILE
        self._config_ids = frozenset(ref for ref in config.trusted_peers if is_node_id(ref))
        self._config_keys = frozenset(ref for ref in config.trusted_peers if is_curve_key(ref))
        self._approvals: dict[str, Approval] = {}

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            entries = document["approved"]
            approvals = [Approval(entry["id"], entry.get("key"), str(entry.get("name", "")),
                                  float(entry.get("approved_at", 0))) for entry in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FederationError(f"{self.path}: unreadable trust file ({type(exc).__name__}); "
                                  "fix or delete it (runtime approvals are lost then)") from None
        for approval in approvals:
            if is_node_id(approval.peer_id) and (approval.key is None
                                                 or is_curve_key(approval.key)):
                self._approvals[approval.peer_id] = approval
            else:
                log.warning("federation: %s: ignoring a malformed approval %r",
                            self.path, approval.peer_id)

    def _save(self, approvals: dict[str, Approval]) -> None:
        """Write ``approvals``, then make them the ones in force: if the disk refuses (full,
        read-only), the trust list stays what the file says and the caller hears why."""
        document = {"approved": [a.to_dict() for a in approvals.values()]}
        try:
            atomic_write(self.path, json.dumps(document, indent=2) + "\n", mode=0o600)
        except OSError as exc:
            raise FederationError(f"cannot save {self.path}: {describe_os_error(exc)}; "
                                  "the trusted peers are unchanged") from None
        self._approvals = approvals

    def trusts(self, peer_id: str, key: str | None) -> bool:
        """Whether we want this peer's traffic and let it take ours."""
        if self.mode == "open":
            return True
        return (peer_id in self._config_ids or peer_id in self._approvals
                or (key is not None and key in self._config_keys))

    def source(self, peer_id: str, key: str | None) -> str | None:
        """Why a peer is trusted: config, approved, open — or None."""
        if peer_id in self._config_ids or (key is not None and key in self._config_keys):
            return "config"
        if peer_id in self._approvals:
            return "approved"
        return "open" if self.mode == "open" else None

    def approve(self, peer_id: str, key: str | None, name: str) -> Approval:
        """Trust a peer from now on (and after restarts)."""
        if not is_node_id(peer_id):
            raise FederationError(f"{peer_id!r} is not a peer id (32 hex digits)")
        if key is not None and node_id(key) != peer_id:
            raise FederationError(f"the key given for peer {peer_id} does not match its id")
        approval = Approval(peer_id, key, name, time.time())
        self._save({**self._approvals, peer_id: approval})
        return approval

    def forget(self, peer_id: str) -> bool:
        """Withdraw a runtime approval. True if there was one."""
        if peer_id in self._config_ids:
            raise FederationError(f"peer {peer_id} is trusted by the configuration "
                                  "(discovery.federation.trusted_peers); remove it there")
        if peer_id not in self._approvals:
            return False
        self._save({k: v for k, v in self._approvals.items() if k != peer_id})
        return True

    def approvals(self) -> list[Approval]:
        return list(self._approvals.values())

    def policy(self, advertised: Mapping[str, str]) -> KeyPolicy:
        """The ZAP policy, given the keys peers advertise right now (id → key)."""
        if self.mode == "open":
            return KeyPolicy(keys=frozenset(advertised.values()) | self._config_keys)
        keys = set(self._config_keys)
        keys.update(a.key for a in self._approvals.values() if a.key is not None)
        return KeyPolicy(keys=frozenset(keys), ids=self._config_ids | frozenset(self._approvals))


# --- the federated bus ------------------------------------------------------------------------

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

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.target.endpoint, "state": self.state, "since": self.since}


_LINK_EVENTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "up",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
    zmq.EVENT_DISCONNECTED: "connecting",
}

LinkListener = Callable[[str, str], None]


class _ZapPolicy:
    """The authenticator's callback: reads the current KeyPolicy, counts, logs a key once."""

    def __init__(self) -> None:
        self.policy = DENY_ALL
        self.allowed = 0
        self.denied = 0
        self._logged: set[str] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        text = key.decode("ascii", "replace")
        if self.policy.allows(text):
            self.allowed += 1
            return True
        self.denied += 1
        if text not in self._logged and len(self._logged) < 256:
            self._logged.add(text)
            who = node_id(text) if is_curve_key(text) else "?"
            log.warning("federation: refused a peer connection from node %s: not trusted", who)
        return False


class FederatedBus:
    """The bus with federation: the L, M and E proxies, their keys and their gatekeeper.

    Same face as ``proxy.Bus`` (start/stop/mode/endpoints/stats). ``mode`` is ``federated``
    when the three proxies run; if the bus ports are held by another answering proxy it is
    ``reused`` (as with the plain Bus) and there is no federation.
    """

    def __init__(self, config: BusConfig, federation: FederationConfig, key_dir: Path,
                 context: zmq.Context) -> None:
        self.config = config
        self.federation = federation
        self.key_dir = key_dir
        self.context = context
        self.mode = "stopped"
        self.keys: CurveKeys | None = None
        self.links: dict[str, Link] = {}
        self._zap = _ZapPolicy()
        self._auth: ThreadAuthenticator | None = None
        self._proxies: dict[str, ProxyThread] = {}
        self._listeners: list[LinkListener] = []
        self._monitor_task: asyncio.Task[None] | None = None
        instance = next(_instance_ids)
        self._local = f"inproc://argentic-edge-fed-local-{instance}"
        self._inproc_front = f"inproc://argentic-edge-fed-front-{instance}"
        self._inproc_back = f"inproc://argentic-edge-fed-back-{instance}"
        self._monitor_endpoint = f"inproc://argentic-edge-fed-monitor-{instance}"
        self._export_endpoint = ""

    # the Bus face

    @property
    def federating(self) -> bool:
        return self.mode == "federated"

    @property
    def endpoints(self) -> BusEndpoints:
        host = connect_host(self.config.broker_address)
        publish = tcp_endpoint(host, self.config.port)
        subscribe = tcp_endpoint(host, self.config.backend_port)
        if self.federating:
            return BusEndpoints(publish, subscribe, self._inproc_front, self._inproc_back)
        return BusEndpoints(publish, subscribe, publish, subscribe)

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
            self._monitor_task = asyncio.create_task(self._watch_links(),
                                                     name="federation-link-monitor")

    def _start_sync(self) -> None:
        self.keys = load_or_create_keys(self.key_dir)
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger(f"{__name__}.zap"))
        try:
            self._auth.start()
        except zmq.ZMQError as exc:
            self._auth = None
            raise BusError(f"federation: cannot start the ZAP gatekeeper ({exc}); only one may "
                           "run per ZeroMQ context") from None
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self._zap)
        try:
            self._proxies = self._build()
        except BusError as taken:
            self._stop_auth()
            config = self.config
            if probe_proxy(self.context, connect_host(config.broker_address), config.port,
                           config.backend_port, min(config.connect_timeout / 1000, 3.0) or 0.5):
                self.mode = "reused"
                log.warning("bus: %s, and a ZeroMQ proxy answers there: using it without "
                            "federation (federation needs this node's own proxies)", taken)
                return
            raise
        except BaseException:
            self._stop_auth()
            raise
        for proxy in self._proxies.values():
            proxy.start()
        self.mode = "federated"
        log.info("bus: publishers connect to %s, subscribers to %s; federation export on %s "
                 "(node id %s)", tcp_endpoint(self.config.broker_address, self.config.port),
                 tcp_endpoint(self.config.broker_address, self.config.backend_port),
                 tcp_endpoint(self.config.broker_address, self.federation.export_port),
                 self.keys.node_id)

    def _build(self) -> dict[str, ProxyThread]:
        """Bind and connect the six sockets; on any failure close what was opened."""
        assert self.keys is not None
        config = self.config
        opened: list[zmq.Socket] = []

        def socket(kind: int) -> zmq.Socket:
            sock = self.context.socket(kind)
            opened.append(sock)
            apply_socket_options(sock, config)
            return sock

        try:
            l_front, l_back = socket(zmq.XSUB), socket(zmq.XPUB)
            bind_or_explain(l_front, tcp_endpoint(config.broker_address, config.port),
                            "bus frontend port (messaging.port)")
            l_front.bind(self._inproc_front)
            l_back.bind(self._local)

            m_front, m_back = socket(zmq.XSUB), socket(zmq.XPUB)
            bind_or_explain(m_back, tcp_endpoint(config.broker_address, config.backend_port),
                            "bus backend port (messaging.backend_port)")
            m_back.bind(self._inproc_back)
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
            bind_or_explain(e_back, tcp_endpoint(config.broker_address,
                                                 self.federation.export_port),
                            "federation export port (discovery.federation.export_port)")
            self._export_endpoint = e_back.last_endpoint.decode()
        except BaseException:
            for sock in opened:
                sock.close(linger=0)
            raise
        return {"local": ProxyThread(self.context, l_front, l_back, "fed-local"),
                "merge": ProxyThread(self.context, m_front, m_back, "fed-merge"),
                "export": ProxyThread(self.context, e_front, e_back, "fed-export")}

    def stats(self) -> ProxyStats | None:
        """What local publishers sent (L's frontend) and local subscribers got (M's backend)."""
        if not self._proxies:
            return None
        local = self._proxies["local"].statistics()
        merge = self._proxies["merge"].statistics()
        return ProxyStats(local.frontend, merge.backend)

    def proxy_stats(self) -> dict[str, ProxyStats]:
        return {name: proxy.statistics() for name, proxy in self._proxies.items()}

    def federation_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "node_id": self.keys.node_id if self.keys else None,
            "export_port": self.export_port,
            "links": {peer_id: link.to_dict() for peer_id, link in self.links.items()},
            "zap": {"allowed": self._zap.allowed, "denied": self._zap.denied},
        }
        if self._proxies:
            stats = self.proxy_stats()
            local_out = stats["local"].backend.messages_out
            status["from_peers"] = max(0, stats["merge"].frontend.messages_in - local_out)
            status["to_peers"] = stats["export"].backend.messages_out
            status["proxies"] = {name: s.to_dict() for name, s in stats.items()}
        return status

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
                proxy.stop()
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

    def link_state(self, peer_id: str) -> str | None:
        link = self.links.get(peer_id)
        return link.state if link is not None else None

    async def set_links(self, targets: Mapping[str, LinkTarget]) -> None:
        """Make M connect to exactly these peers (one proxy pause for all changes)."""
        if not self.federating:
            return
        drop = [peer for peer, link in self.links.items() if targets.get(peer) != link.target]
        add = {peer: target for peer, target in targets.items()
               if peer not in self.links or peer in drop}
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

        def rebind(frontend: zmq.Socket, backend: zmq.Socket) -> None:
            # libzmq closes the listener in its IO thread; bind again once it says it did.
            closed = backend.get_monitor_socket(zmq.EVENT_CLOSED)
            try:
                backend.unbind(endpoint)
                if not closed.poll(5000):
                    raise BusError(f"federation: {endpoint} did not close within 5 s")
                recv_monitor_message(closed)
            finally:
                backend.disable_monitor()
                closed.close(linger=0)
            bind_or_explain(backend, endpoint,
                            "federation export port (discovery.federation.export_port)")

        export = self._proxies["export"]
        await asyncio.get_running_loop().run_in_executor(None, export.reconfigure, rebind)
        log.info("federation: dropped every peer connection to %s; trusted peers reconnect",
                 endpoint)

    async def _reconnect(self, removed: list[LinkTarget], added: list[LinkTarget]) -> None:
        def change(frontend: zmq.Socket, backend: zmq.Socket) -> None:
            for target in removed:
                try:
                    frontend.disconnect(target.endpoint)
                except zmq.ZMQError:
                    pass  # never connected, or already gone: nothing to undo
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
                    if state in ("refused", "failed"):
                        log.warning("federation: peer %s %s our link (%s)", peer_id,
                                    "refused" if state == "refused" else "failed", endpoint)
                    for listener in list(self._listeners):
                        listener(peer_id, state)
        finally:
            monitor.close()
