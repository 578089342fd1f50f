"""The web's listening sockets, bounded so that no client can take the appliance's descriptors.

Every connection holds a file descriptor, and the bus, the broker link and the data files need
theirs from the same per-process limit (RLIMIT_NOFILE). So the web keeps at most ``limit``
connections open, where ``limit`` leaves ``DESCRIPTOR_RESERVE`` descriptors to the rest of the
appliance; a connection past it is closed at once and counted. The count is kept at the socket
(accept and close), so a TLS connection that never finishes its handshake counts as much as an
idle HTTP one. Idle connections, including one that sends half a request line and stops, are
closed after ``IDLE_TIMEOUT`` (aiohttp's keep-alive timer, which starts when the connection does).

When the process runs out of descriptors anyway (another part used them up, such as clients of
the bus), the waiting connection is shed with the help of one spare descriptor held for that
purpose. When even that fails (another thread took the freed slot), the listener pauses for a
second, as asyncio does. asyncio itself would log a traceback for every failed accept, up to its
backlog of 128 per loop pass (tens of thousands a second); here the first failure is logged,
every one is counted, and asyncio's report of them is silenced (``quiet_accept_failures``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import ssl
import time
import weakref
from typing import Any

from aiohttp import web

from argentic_edge.web.sniff import HttpsOrRedirect

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 10.0  # seconds without a complete request: idle keep-alive, slow request line, TLS
MAX_CONNECTIONS = 256
DESCRIPTOR_RESERVE = 128  # descriptors the web never takes: bus, broker, mDNS, files, threads
BACKLOG = 128
MAX_SHED_PER_ACCEPT = 64  # connections closed in one accept() call before the loop runs again
EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE = 0.5  # after a failure nothing could shed; under asyncio's 1 s pause, so its retry runs
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's report of such a failure


def connection_limit(configured: int = MAX_CONNECTIONS, reserve: int = DESCRIPTOR_RESERVE) -> int:
    """``configured``, lowered so that ``reserve`` descriptors stay free under RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - reserve))


class ConnectionGate:
    """The counts shared by the listening sockets of one web service (its status section)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0  # closed at once: ``limit`` connections were open
        self.exhausted = 0  # accept failed for want of descriptors or memory
        self._spare = _open_spare()

    def admit(self) -> bool:
        if self.open < self.limit:
            self.open += 1
            return True
        if not self.refused:
            log.warning(
                "web: connection limit (%d) reached; further connections are closed at "
                "once and counted (status: web.connections.refused)",
                self.limit,
            )
        self.refused += 1
        return False

    def released(self) -> None:
        self.open -= 1

    def shed(self, listener: socket.socket, exc: OSError) -> bool:
        """Out of descriptors: count, log the first time, and close the waiting connection with
        the spare descriptor's slot. False when that could not be done."""
        if not self.exhausted:
            log.error(
                "web: cannot accept connections: %s (the process's descriptor limit, "
                "RLIMIT_NOFILE, or the system's is reached); further failures are counted "
                "(status: web.connections.exhausted)",
                exc.strerror or exc,
            )
        self.exhausted += 1
        if self._spare < 0:
            return False
        os.close(self._spare)
        try:
            fd, _ = listener._accept()  # type: ignore[attr-defined]
            os.close(fd)
            shed = True
        except OSError:
            shed = False
        self._spare = _open_spare()
        return shed

    def close(self) -> None:
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1

    def to_dict(self) -> dict[str, int]:
        return {
            "open": self.open,
            "limit": self.limit,
            "refused": self.refused,
            "exhausted": self.exhausted,
        }


def _open_spare() -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


class _Connection(socket.socket):
    """An accepted socket that gives its slot back when closed."""

    def __init__(self, *args: Any, gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate: ConnectionGate | None = gate

    def close(self) -> None:
        gate, self._gate = self._gate, None
        super().close()
        if gate is not None:
            gate.released()

    def detach(self) -> int:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.released()
        return super().detach()


class GatedListener(socket.socket):
    """A listening socket whose ``accept()`` (called by asyncio's accept loop) keeps the cap."""

    gate: ConnectionGate
    resume_at = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self.resume_at:
            raise BlockingIOError(errno.EAGAIN, "paused: out of descriptors")
        for _ in range(MAX_SHED_PER_ACCEPT):
            try:
                fd, address = self._accept()  # type: ignore[attr-defined]
            except OSError as exc:
                if exc.errno not in EXHAUSTION:
                    raise
                if not self.gate.shed(self, exc):
                    # asyncio pauses this listener for a second; its report is silenced
                    self.resume_at = time.monotonic() + PAUSE
                    raise
                continue
            if self.gate.admit():
                return _Connection(
                    self.family, self.type, self.proto, fileno=fd, gate=self.gate
                ), address
            os.close(fd)
        raise BlockingIOError(errno.EAGAIN, "connections shed; more on the next loop pass")


_listeners: weakref.WeakSet[GatedListener] = weakref.WeakSet()


def quiet_accept_failures(loop: asyncio.AbstractEventLoop) -> None:
    """Take asyncio's reports of failed accepts on our listeners (already counted and logged
    once by the gate) off ``loop``'s exception handler; every other report goes where it went.
    Installed once per loop."""
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_gated_listeners", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        if (
            context.get("message") == ACCEPT_FAILED
            and sock is not None
            and any(sock.fileno() == listener.fileno() for listener in _listeners)
        ):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiets_gated_listeners = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def listen(host: str, port: int, gate: ConnectionGate) -> list[GatedListener]:
    """Bound, listening sockets for ``host`` (every address it resolves to; all of them for
    ``0.0.0.0``/``::``/``*``), the way asyncio's create_server would make them."""
    infos = socket.getaddrinfo(
        None if host in ("", "*") else host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[GatedListener] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = GatedListener(family, kind, proto)
            listeners.append(sock)
            _listeners.add(sock)
            sock.gate = gate
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class GatedSite(web.BaseSite):
    """An aiohttp site on one GatedListener; a TLS handshake must end within ``timeout``. With
    TLS, a plain HTTP request on the same port is answered with a redirect (``sniff``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: GatedListener,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=BACKLOG)
        self._sock = sock
        self._timeout = timeout

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{'https' if self._ssl_context else 'http'}://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        context, timeout = self._ssl_context, self._timeout
        factory = server if context is None else lambda: HttpsOrRedirect(server, context, timeout)
        self._server = await asyncio.get_running_loop().create_server(
            factory, sock=self._sock, backlog=BACKLOG
        )
