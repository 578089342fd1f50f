"""The certificate service: keeps the server certificate good while the appliance runs.

Every ``check_interval`` seconds it makes the store's files ready (issuing a due certificate
again, checking a brought one), and when the server certificate on disk changed — renewed here,
by ``argentic-edge certs renew`` in another process, or a brought file replaced by its owner — it
reloads the registered SSL contexts in place and tells the registered callbacks. Established TLS
connections keep their certificate; new handshakes get the new one.

Errors never stop the service: the current certificate stays in use, the error is logged once
(again only when it changes), counted, shown in :meth:`CertManager.status`, and the next check
comes sooner (``ERROR_RETRY`` seconds) so a fixed clock or a remounted disk is noticed quickly.

The checks themselves run in a child process (:mod:`argentic_edge.certs.worker`), so this
long-running service never imports cryptography (:mod:`argentic_edge.certs.files` says why).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import argentic_edge.certs.worker as cert_worker
from argentic_edge.certs.files import (
    CertError,
    CertFiles,
    CertInfo,
    load_server_chain,
    server_ssl_context,
    utcnow,
)

log = logging.getLogger(__name__)

ERROR_RETRY = 60.0
WARN_DAYS = (30, 7)

RenewedCallback = Callable[[CertInfo], Awaitable[None] | None]


@dataclass(frozen=True)
class CertificateStatus:
    """One certificate as the status shows it (``CertInfo.to_dict``: text dates, a text path)."""

    name: str
    path: str
    subject: str
    sans: list[str]
    issuer: str
    fingerprint_sha256: str
    not_before: str
    not_after: str
    days_left: float
    is_ca: bool


@dataclass(frozen=True)
class CertificatesStatus:
    """The certificates service's status: the certificates, the last problem and when it checked."""

    certificates: list[CertificateStatus]
    error: str | None
    errors: int
    last_check: str | None


class CertManager:
    """Runs the checks of one node's :class:`CertFiles`; ``start()``/``stop()`` like every service."""

    name = "certificates"

    def __init__(
        self,
        files: CertFiles,
        *,
        check_interval: float = 3600.0,
        warn_days: tuple[int, ...] = WARN_DAYS,
    ):
        self.files = files
        self.check_interval = check_interval
        self.error: str | None = None
        self.errors = 0
        self.last_check: dt.datetime | None = None
        self.certificates: list[CertInfo] = []
        self._contexts: list[ssl.SSLContext] = []
        self._callbacks: list[RenewedCallback] = []
        self._served: str | None = None  # fingerprint of the server certificate the contexts hold
        self._warned: set[str] = set()  # the store's once-only warnings, kept across checks
        self._expiry = ExpiryWarnings(warn_days)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add_ssl_context(self, context: ssl.SSLContext) -> None:
        """Reload ``context`` (made by :func:`server_ssl_context`) whenever the certificate changes."""
        self._contexts.append(context)

    def on_renewed(self, callback: RenewedCallback) -> None:
        """Call ``callback(server_info)`` (plain or async) after a new server certificate is loaded."""
        self._callbacks.append(callback)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server context that follows renewals, or None while no good certificate exists.

        One context is made on first use and reloaded in place from then on, so the web server
        built on it keeps serving across renewals.
        """
        if self.error is not None and self._served is None:
            return None
        if not self._contexts:
            self.add_ssl_context(server_ssl_context(self.files))
        return self._contexts[0]

    def health(self) -> tuple[bool, str]:
        if self.error is not None:
            return False, self.error
        server = self.server
        if server is not None and server.days_left <= 0:
            return False, f"the server certificate expired ({server.path})"
        return True, "certificates ok"

    @property
    def server(self) -> CertInfo | None:
        return next((info for info in self.certificates if info.name == "server"), None)

    async def start(self) -> None:
        """First check (creating the files on first start), then the periodic loop. Never raises
        for certificate problems: read :attr:`error` to decide whether TLS can be served."""
        self._stopping.clear()
        await self._check(notify=False)
        self._task = asyncio.create_task(self._run(), name="certs")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def check(self) -> None:
        """One pass now: ensure, reload and notify on change, warn about expiry."""
        await self._check(notify=True)

    def status(self) -> CertificatesStatus:
        """The state the status page and metrics show."""
        return CertificatesStatus(
            certificates=[CertificateStatus(**info.to_dict()) for info in self.certificates],
            error=self.error,
            errors=self.errors,
            last_check=self.last_check.isoformat() if self.last_check else None,
        )

    async def _run(self) -> None:
        while True:
            delay = (
                self.check_interval if self.error is None else min(self.check_interval, ERROR_RETRY)
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await self.check()
            except Exception:  # a bug must not end renewals for good: log it and try again later
                log.exception("certificate check failed unexpectedly")
                self.errors += 1

    async def _check(self, *, notify: bool) -> None:
        try:
            infos = await cert_worker.refresh(self.files, self._warned)
            server = next(info for info in infos if info.name == "server")
            changed = server.fingerprint_sha256 != self._served
            if changed:
                for context in self._contexts:
                    load_server_chain(context, self.files)
        except (CertError, OSError) as exc:  # OSError: the worker could not be started at all
            self._fail(str(exc))
            return
        self.certificates = infos
        self.last_check = utcnow()
        if self.error is not None:
            log.info("certificates are fine again")
            self.error = None
        if changed:
            self._served = server.fingerprint_sha256
            if notify:
                log.info(
                    "serving the new server certificate (sha256 %s)", server.fingerprint_sha256
                )
                await self._notify(server)
        self._expiry.check(infos)

    async def _notify(self, server: CertInfo) -> None:
        for callback in self._callbacks:
            try:
                result = callback(server)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one broken listener must not keep the others from hearing
                log.exception("certificate renewal callback %r failed", callback)

    def _fail(self, message: str) -> None:
        self.errors += 1
        if message != self.error:
            log.error("certificates: %s", message)
        self.error = message


class ExpiryWarnings:
    """Log once per certificate and threshold (30 and 7 days, then expired), the nearest only.

    A certificate is known by its fingerprint, so a renewed one starts with a clean slate, and a
    check every hour does not repeat yesterday's warning.
    """

    def __init__(self, days: tuple[int, ...] = WARN_DAYS) -> None:
        self.days = (*sorted(days, reverse=True), 0)
        self._warned: set[tuple[str, int]] = set()

    def check(self, infos: list[CertInfo]) -> list[tuple[str, int]]:
        """Warn where a threshold was crossed since the last check; returns (name, threshold)."""
        warned = []
        for info in infos:
            crossed = [days for days in self.days if info.days_left <= days]
            if not crossed or (info.fingerprint_sha256, crossed[-1]) in self._warned:
                continue
            self._warned.update((info.fingerprint_sha256, days) for days in crossed)
            warned.append((info.name, crossed[-1]))
            if crossed[-1] == 0:
                log.error(
                    "certificate %s (%s) expired on %s", info.name, info.path, info.not_after.date()
                )
            else:
                log.warning(
                    "certificate %s (%s) expires in %.0f days, on %s",
                    info.name,
                    info.path,
                    info.days_left,
                    info.not_after.date(),
                )
        return warned
