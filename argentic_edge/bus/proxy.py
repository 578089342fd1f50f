"""The bus: libzmq XSUB/XPUB proxies, their counters, external mode and taken ports.

Every message is forwarded by libzmq's own proxy loop in a C thread; Python only starts, steers
and reads it. Counters come from ``proxy_steerable``'s STATISTICS command, so nothing is copied
through Python to be counted.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import struct
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from argentic_edge.config import BusConfig
from argentic_edge.errors import EdgeError

log = logging.getLogger(__name__)

_instance_ids = itertools.count(1)


class BusError(EdgeError):
    """The bus cannot run as configured (a taken port, an unusable address)."""


@dataclass(frozen=True)
class SideStats:
    """One side of a proxy, as libzmq counts it."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class ProxyStats:
    """Frontend (publishers, XSUB) and backend (subscribers, XPUB) counters.

    ``frontend.messages_in`` is what publishers sent; ``backend.messages_out`` what was handed to
    the XPUB for subscribers; ``backend.messages_in`` counts subscription messages going upstream.
    """

    frontend: SideStats = SideStats()
    backend: SideStats = SideStats()

    @classmethod
    def from_frames(cls, frames: list[bytes]) -> ProxyStats:
        if len(frames) != 8:
            raise BusError(f"proxy STATISTICS answered {len(frames)} frames, expected 8")
        values = [struct.unpack("<Q", frame)[0] for frame in frames]
        return cls(SideStats(*values[:4]), SideStats(*values[4:]))

    def __add__(self, other: ProxyStats) -> ProxyStats:
        def add(a: SideStats, b: SideStats) -> SideStats:
            return SideStats(*(getattr(a, f.name) + getattr(b, f.name) for f in fields(SideStats)))

        return ProxyStats(add(self.frontend, other.frontend), add(self.backend, other.backend))

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {side: dict(vars(getattr(self, side))) for side in ("frontend", "backend")}


class ProxyThread:
    """One XSUB→XPUB libzmq proxy in its own thread, steered through a REQ/REP control pair.

    The proxy owns its two sockets while it runs. To change them (the federation adds and
    removes peer connections), ``reconfigure`` stops the loop, lets the caller touch the sockets
    in its own thread, and starts a new loop on the same sockets: messages queued in them stay,
    and the counters carry on from where they were.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        frontend: zmq.Socket[Any],
        backend: zmq.Socket[Any],
        name: str,
    ) -> None:
        self.context = context
        self.frontend = frontend
        self.backend = backend
        self.name = name
        # One lock over the control socket's whole life (requests, halt, restart): the status
        # reads counters from the event loop while the federation reconfigures from a thread,
        # and a ZeroMQ socket used or closed by two threads at once aborts the process.
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._control: zmq.Socket[Any] | None = None
        self._carried = ProxyStats()
        self._last = ProxyStats()
        self._stale = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        # Unique in the process: libzmq frees an inproc name only when its reaper has destroyed
        # the closed socket, so a name used again right after a stop can still be taken.
        endpoint = f"inproc://argentic-edge-control-{self.name}-{next(_instance_ids)}"
        theirs = self.context.socket(zmq.REP)
        theirs.bind(endpoint)
        ours = self.context.socket(zmq.REQ)
        ours.setsockopt(zmq.LINGER, 0)
        ours.setsockopt(zmq.RCVTIMEO, 2000)
        ours.setsockopt(zmq.SNDTIMEO, 2000)
        # After a request that timed out, the next one may be sent and the late answer to the
        # old one is dropped, instead of the REQ socket refusing every request from then on.
        ours.setsockopt(zmq.REQ_RELAXED, 1)
        ours.setsockopt(zmq.REQ_CORRELATE, 1)
        ours.connect(endpoint)
        self._control = ours
        self._thread = threading.Thread(
            target=self._run, args=(theirs,), name=f"zmq-proxy-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self, control: zmq.Socket[Any]) -> None:
        try:
            zmq.proxy_steerable(self.frontend, self.backend, None, control)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("bus proxy %s stopped: %s", self.name, exc)
        finally:
            control.close(linger=0)

    def _command(self, command: bytes) -> list[bytes]:
        if self._control is None:
            raise BusError(f"proxy {self.name} is not running")
        with self._lock:
            try:
                self._control.send(command)
                return self._control.recv_multipart()
            except zmq.Again:
                raise BusError(
                    f"proxy {self.name} did not answer {command.decode()} within "
                    f"2 s (busy, or blocked sending to a full peer)"
                ) from None

    def statistics(self) -> ProxyStats:
        """Counters since the first start (runs before a reconfigure included).

        Never an error and never a long wait: while another thread reconfigures the proxy, or
        when it does not answer in time, the last counters read are reported (the status page
        and health must not fail, nor block the event loop, because libzmq is busy)."""
        if not self._lock.acquire(timeout=0.1):
            return self._last
        try:
            if not self.running:
                return self._carried
            try:
                current = self._carried + ProxyStats.from_frames(self._command(b"STATISTICS"))
            except BusError as exc:
                if not self._stale:
                    log.warning("%s; its counters are shown as last read", exc)
                self._stale = True
                return self._last
            if self._stale:
                log.info("proxy %s answers again", self.name)
            self._stale = False
            self._last = current
            return current
        finally:
            self._lock.release()

    def _halt(self) -> None:
        if not self.running:
            return
        self._carried = self.statistics()
        self._command(b"TERMINATE")
        assert self._thread is not None and self._control is not None
        self._thread.join(timeout=5)
        self._control.close(linger=0)
        self._control = None
        self._thread = None

    def reconfigure(self, change: Callable[[zmq.Socket[Any], zmq.Socket[Any]], None]) -> None:
        """Stop the loop, apply ``change(frontend, backend)`` in this thread, start it again."""
        with self._lock:
            self._halt()
            try:
                change(self.frontend, self.backend)
            finally:
                self._start()

    def stop(self, release: Callable[[], None] | None = None) -> None:
        """Stop the loop and close both sockets; the counters stay readable. ``release`` runs
        in between (the bus unbinds its ports there, so they can be bound again at once)."""
        with self._lock:
            self._halt()
        if release is not None:
            release()
        self.frontend.close()
        self.backend.close()


def tcp_endpoint(host: str, port: int) -> str:
    """``tcp://host:port`` with IPv6 literals bracketed and ``0.0.0.0`` meaning every address."""
    if host == "*":
        return f"tcp://*:{port}"
    if ":" in host:
        return f"tcp://[{host}]:{port}"
    return f"tcp://{host}:{port}"


def connect_host(bind_host: str) -> str:
    """Where a local client connects to reach something bound on ``bind_host``."""
    return {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}.get(bind_host, bind_host)


def apply_socket_options(socket: zmq.Socket[Any], config: BusConfig) -> None:
    """The seed's socket options, the same on every bus socket we own.

    Queues count messages, so ``max_message_size`` is what bounds their bytes: libzmq drops the
    connection of a peer that sends a larger message before buffering it (SECURITY.md).
    """
    socket.setsockopt(zmq.SNDHWM, config.high_water_mark)
    socket.setsockopt(zmq.RCVHWM, config.high_water_mark)
    socket.setsockopt(zmq.MAXMSGSIZE, config.max_message_size)
    socket.setsockopt(zmq.LINGER, config.linger)
    socket.setsockopt(zmq.CONNECT_TIMEOUT, config.connect_timeout)
    if ":" in config.broker_address:
        socket.setsockopt(zmq.IPV6, 1)


def closed_monitor(socket: zmq.Socket[Any]) -> zmq.Socket[Any]:
    """A monitor of ``socket`` that hears its listeners close, on an inproc name of its own.

    pyzmq's default name is made from the socket's file descriptor, and libzmq frees an inproc
    name only once its reaper destroyed the closed monitor: a new socket that got the same
    descriptor, monitored right after, would find the name taken."""
    return socket.get_monitor_socket(
        zmq.EVENT_CLOSED, addr=f"inproc://argentic-edge-monitor-{next(_instance_ids)}"
    )


def unbind_and_wait(socket: zmq.Socket[Any], endpoints: list[str], timeout: float = 2.0) -> None:
    """Unbind TCP endpoints and wait until libzmq has really closed the listeners.

    libzmq closes listeners in its I/O thread, after close() or unbind() returned: binding the same
    port right away fails now and then (measured: 6 of 200 bus restarts), which is exactly what a
    live configuration change does. The monitor's EVENT_CLOSED says the listener is gone.
    """
    monitor = closed_monitor(socket)
    try:
        for endpoint in endpoints:
            socket.unbind(endpoint)
        deadline = time.monotonic() + timeout
        closed = 0
        while closed < len(endpoints) and (remaining := deadline - time.monotonic()) > 0:
            if monitor.poll(int(remaining * 1000) + 1):
                recv_monitor_message(monitor)
                closed += 1
    finally:
        socket.disable_monitor()
        monitor.close(linger=0)


def bind_or_explain(socket: zmq.Socket[Any], endpoint: str, what: str) -> None:
    """Bind, turning libzmq's errno into a sentence naming the port."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BusError(f"{what} {endpoint} is already in use by another program") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BusError(f"{what} {endpoint}: this machine has no such address") from None
        if exc.errno == errno.EACCES:
            raise BusError(
                f"{what} {endpoint}: permission denied (ports below 1024 need root)"
            ) from None
        raise BusError(f"{what} {endpoint}: {exc}") from None


def probe_proxy(
    context: zmq.Context[Any], host: str, port: int, backend_port: int, timeout: float
) -> bool:
    """True when an XSUB/XPUB proxy forwards a message from ``port`` to ``backend_port``.

    Used before giving up on a taken port: if what holds it is a proxy (another argentic-edge,
    an Argentic agent's embedded proxy), the appliance can use it instead of failing.
    """
    topic = f"_argentic_edge/probe/{uuid.uuid4().hex}".encode()
    pub = context.socket(zmq.PUB)
    sub = context.socket(zmq.SUB)
    try:
        for sock in (pub, sub):
            sock.setsockopt(zmq.LINGER, 0)
            if ":" in host:
                sock.setsockopt(zmq.IPV6, 1)
        sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(tcp_endpoint(host, backend_port))
        pub.connect(tcp_endpoint(host, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.send(topic + b" {}")
            if sub.poll(50):
                return bool(sub.recv().startswith(topic))
        return False
    finally:
        pub.close()
        sub.close()


@dataclass(frozen=True)
class BusEndpoints:
    """Where clients reach the bus: TCP for agents, inproc for the appliance's own services."""

    publish: str
    subscribe: str
    local_publish: str
    local_subscribe: str


@dataclass(frozen=True)
class BusStatus:
    """The bus service's status: its mode, where clients connect, libzmq's counters (None
    when the proxy is not ours)."""

    mode: str
    publish: str
    subscribe: str
    counters: ProxyStats | None


class ProxyBus(ABC):
    """What the plain and the federated bus share: their face (``mode``, ``endpoints``), binding
    the two public ports, what a taken port means, and releasing the ports on stop.

    ``local_mode`` is the mode in which the proxies are ours: then the appliance's own services
    reach them over inproc, and a stop must release the TCP ports so a restart can bind them.
    """

    local_mode = "embedded"

    def __init__(self, config: BusConfig, context: zmq.Context[Any], kind: str) -> None:
        self.config = config
        self.context = context
        self.mode = "stopped"
        self._listening: list[tuple[zmq.Socket[Any], str]] = []
        self._instance = next(_instance_ids)
        self._inproc_front = f"inproc://argentic-edge-{kind}-front-{self._instance}"
        self._inproc_back = f"inproc://argentic-edge-{kind}-back-{self._instance}"

    @property
    def endpoints(self) -> BusEndpoints:
        host = connect_host(self.config.broker_address)
        publish = tcp_endpoint(host, self.config.port)
        subscribe = tcp_endpoint(host, self.config.backend_port)
        if self.mode == self.local_mode:
            return BusEndpoints(publish, subscribe, self._inproc_front, self._inproc_back)
        return BusEndpoints(publish, subscribe, publish, subscribe)

    @abstractmethod
    def stats(self) -> ProxyStats | None:
        """The counters a user sees for this bus, None when the proxies are not ours."""

    def status(self) -> BusStatus:
        endpoints = self.endpoints
        return BusStatus(self.mode, endpoints.publish, endpoints.subscribe, self.stats())

    def _probe(self) -> bool:
        config = self.config
        timeout = min(config.connect_timeout / 1000, 3.0) or 0.5
        return probe_proxy(
            self.context,
            connect_host(config.broker_address),
            config.port,
            config.backend_port,
            timeout,
        )

    def _bind_frontend(self, socket: zmq.Socket[Any]) -> None:
        """Publishers' port (messaging.port), and the inproc twin our own services use."""
        self._listen(socket, self.config.port, "bus frontend port (messaging.port)")
        socket.bind(self._inproc_front)

    def _bind_backend(self, socket: zmq.Socket[Any]) -> None:
        """Subscribers' port (messaging.backend_port), and its inproc twin."""
        self._listen(socket, self.config.backend_port, "bus backend port (messaging.backend_port)")
        socket.bind(self._inproc_back)

    def _listen(self, socket: zmq.Socket[Any], port: int, what: str) -> None:
        bind_or_explain(socket, tcp_endpoint(self.config.broker_address, port), what)
        self._listening.append((socket, socket.get_string(zmq.LAST_ENDPOINT)))

    def _use_answering_proxy(self, taken: BusError, why: str) -> None:
        """A port we need is taken: use the proxy that holds it if one answers, else fail."""
        self._listening = []  # the sockets that bound were closed with the failed build
        if not self._probe():
            raise taken
        self.mode = "reused"
        log.warning("bus: %s, and a ZeroMQ proxy answers there: using it %s", taken, why)

    def _releaser(self, proxy: ProxyThread) -> Callable[[], None]:
        """For ``proxy.stop``: unbind the TCP ports of ``proxy``'s sockets and wait until libzmq
        closed them, in the proxy's own stop (a socket is touched by one thread at a time)."""

        def release() -> None:
            mine = [
                (sock, endpoint)
                for sock, endpoint in self._listening
                if sock is proxy.frontend or sock is proxy.backend
            ]
            for sock, endpoint in mine:
                unbind_and_wait(sock, [endpoint])
            self._listening = [entry for entry in self._listening if entry not in mine]

        return release


class Bus(ProxyBus):
    """The local bus as a service: ``await start()``, ``await stop()``, ``stats()``.

    Modes (``mode`` after start):
    - ``embedded``: we bind both ports and run the proxy (start_proxy: true).
    - ``reused``: a port was taken by a proxy that answers, so we use it (and say so).
    - ``external``: start_proxy is false; we only connect to the proxy at broker_address.
    With ``proxy_mode: external`` and ``start_proxy: true``, an answering proxy is used and
    one is started only if none answers: the seed's "auto-start proxy if not running".
    """

    def __init__(self, config: BusConfig, context: zmq.Context[Any] | None = None) -> None:
        self._own_context = context is None
        super().__init__(config, context or zmq.Context(), "bus")
        self.proxy: ProxyThread | None = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._start_sync)

    def _start_sync(self) -> None:
        config = self.config
        where = f"{connect_host(config.broker_address)}:{config.port}/{config.backend_port}"
        if not config.start_proxy:
            self.mode = "external"
            if self._probe():
                log.info("bus: using the external proxy at %s", where)
            else:
                log.warning(
                    "bus: no proxy answers at %s yet; clients connect when it appears", where
                )
            return
        if config.proxy_mode == "external" and self._probe():
            self.mode = "reused"
            log.info("bus: a proxy already runs at %s; using it", where)
            return
        try:
            self.proxy = self._bind_proxy()
        except BusError as taken:
            self._use_answering_proxy(taken, "(its counters are not ours to show)")
            return
        self.proxy.start()
        self.mode = "embedded"
        log.info(
            "bus: publishers connect to %s, subscribers to %s",
            tcp_endpoint(config.broker_address, config.port),
            tcp_endpoint(config.broker_address, config.backend_port),
        )

    def _bind_proxy(self) -> ProxyThread:
        frontend = self.context.socket(zmq.XSUB)
        backend = self.context.socket(zmq.XPUB)
        try:
            for sock in (frontend, backend):
                apply_socket_options(sock, self.config)
            self._bind_frontend(frontend)
            self._bind_backend(backend)
        except BaseException:
            frontend.close(linger=0)
            backend.close(linger=0)
            raise
        return ProxyThread(self.context, frontend, backend, "bus")

    def stats(self) -> ProxyStats | None:
        """libzmq's counters, or None when the proxy is not ours (reused or external)."""
        return self.proxy.statistics() if self.proxy is not None else None

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop_sync)

    def _stop_sync(self) -> None:
        if self.proxy is not None:
            self.proxy.stop(release=self._releaser(self.proxy))
        if self._own_context:
            self.context.term()
        self.mode = "stopped"
