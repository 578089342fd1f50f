"""The web as an Edge service: the aiohttp application on ``web.host:web.port``.

HTTPS uses the certificates service's reloadable SSLContext when that service runs (app.py hands
its ``ssl_context`` over as ``tls``); in add-on mode (ingress) the Supervisor proxies plain HTTP,
so the page is served plain.

Every configuration change restarts this service, usually from inside one of its own requests (the
save from the page). Stopping then closes the listening socket at once, so the new instance can bind
the port, but lets the old application finish that request in the background: waiting for it here
would wait for ourselves.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from argentic_edge.config import WebConfig
from argentic_edge.errors import ServiceError
from argentic_edge.web.app import create_app
from argentic_edge.web.appliance import Appliance
from argentic_edge.web.auth import ACCESS, SUPERVISOR_ADDRESS
from argentic_edge.web.listener import (
    IDLE_TIMEOUT,
    ConnectionGate,
    GatedListener,
    GatedSite,
    connection_limit,
    listen,
    quiet_accept_failures,
)
from argentic_edge.web.protolog import RequestErrors
from argentic_edge.web.security import SERVING

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
_finishing: set[asyncio.Task[None]] = set()


class WebError(ServiceError):
    """The web cannot listen as configured."""


def _explain(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"web port {port} (web.port) on {host} is already in use by another program"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"web.host {host}: this machine has no such address"
    if exc.errno == errno.EACCES:
        return f"web port {port} (web.port): permission denied (ports below 1024 need root)"
    return f"web cannot listen on {host}:{port}: {exc.strerror or exc}"


@dataclass(frozen=True)
class WebStatus:
    """The ``web`` section of the status document."""

    url: str | None
    port: int | None
    https: bool
    ingress: bool
    connections: dict[str, int] | None
    requests: dict[str, int]
    logins: dict[str, int] | None


class WebService:
    """Serves ``create_app(appliance)`` as ``config`` says. ``tls`` is the certificates
    service's SSLContext source (None: plain HTTP); ``tls_problem`` says why it has none."""

    name = "web"

    def __init__(
        self,
        config: WebConfig,
        appliance: Appliance,
        *,
        tls: Callable[[], ssl.SSLContext | None] | None = None,
        tls_problem: Callable[[], str | None] = lambda: None,
        supervisor_address: str = SUPERVISOR_ADDRESS,
    ) -> None:
        self.config = config
        self.appliance = appliance
        self.tls = tls
        self.tls_problem = tls_problem
        self.supervisor_address = supervisor_address
        self._runner: web.AppRunner | None = None
        self._https = False
        self._gate: ConnectionGate | None = None
        self._errors = RequestErrors()

    def _ssl_context(self) -> ssl.SSLContext | None:
        """HTTPS when the certificates service runs. When it runs but has no usable
        certificate, the page is not served at all: falling back to plain HTTP would send the
        password across the LAN in clear because a file broke."""
        if self.config.ingress or self.tls is None:
            return None
        context = self.tls()
        if context is None:
            raise WebError(
                f"the web needs HTTPS and the certificates are not usable "
                f"({self.tls_problem() or 'no certificate'}); "
                "repair them, or set certificates.enabled: false to serve plain "
                "HTTP"
            )
        return context

    async def start(self) -> None:
        config = self.config
        context = self._ssl_context()
        app = create_app(self.appliance, supervisor_address=self.supervisor_address)
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=IDLE_TIMEOUT,
            logger=self._errors,
        )
        await runner.setup()
        gate = ConnectionGate(connection_limit())
        quiet_accept_failures(asyncio.get_running_loop())
        listeners: list[GatedListener] = []
        try:
            listeners = listen(config.host, config.port, gate)
            for sock in listeners:
                await GatedSite(runner, sock, context, IDLE_TIMEOUT).start()
        except OSError as exc:
            await runner.cleanup()
            for sock in listeners:
                sock.close()
            gate.close()
            raise WebError(_explain(exc, config.host, config.port)) from None
        self._runner, self._https, self._gate = runner, context is not None, gate
        log.info("web: status page at %s", self.url)

    @property
    def port(self) -> int | None:
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", "*"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"{'https' if self._https else 'http'}://{host}:{self.port}/"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self._gate is not None:
            self._gate.close()
        if runner is None:
            return
        if SERVING.get() is not runner.app:
            await runner.cleanup()
            return
        for site in list(runner.sites):
            await site.stop()
        task = asyncio.create_task(runner.cleanup(), name="argentic-edge-web-finish")
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)

    def health(self) -> tuple[bool, str]:
        if self._runner is None:
            return False, "not serving"
        return True, f"serving {self.url}"

    def status(self) -> WebStatus:
        return WebStatus(
            url=self.url if self._runner else None,
            port=self.port,
            https=self._https,
            ingress=self.config.ingress,
            connections=self._gate.to_dict() if self._gate else None,
            requests=self._errors.to_dict(),
            logins=(self._runner.app[ACCESS].limiter.to_dict() if self._runner else None),
        )
