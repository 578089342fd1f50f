"""One port for HTTPS, with an answer for whoever types ``http://``.

With certificates on, the page's port speaks only TLS. A browser or ``curl`` pointed at
``http://host:port/`` used to get an empty reply, which reads as "the appliance is down". The
first byte a client sends tells the two apart: a TLS connection starts with a handshake record
(0x16), an HTTP request with a method name. A TLS client is handed to asyncio's TLS protocol
with the bytes already read, and from there to the aiohttp application exactly as before. A
plain request never reaches the application (no cookie, no form, no password is read): it gets
a redirect to ``https://`` at the same host, port and path, or a plain-text hint when it names
no usable host, and the connection is closed.

asyncio has no public way to start server-side TLS on bytes already read (``loop.start_tls``
drops them), so the TLS protocol is built here the way ``start_tls`` builds it
(``asyncio.sslproto.SSLProtocol``, Python 3.11).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from asyncio import sslproto
from collections.abc import Callable

TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record: a ClientHello starts with it
REQUEST_HEAD_LIMIT = 8192  # bytes of a plain request read before giving up on it
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # origin-form, printable, no spaces (nothing to inject)


def plain_answer(head: bytes, port: int) -> bytes:
    """The whole HTTP/1.1 response to a plain request whose head (request line and headers)
    is ``head``, on a port that speaks HTTPS only."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    target = parts[1] if len(parts) == 3 and _TARGET.fullmatch(parts[1]) else None
    host = next(
        (line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")),
        "",
    )
    named = _HOST.fullmatch(host)
    if target is not None and named is not None:
        location = f"https://{named.group(1)}:{port}{target}"
        return _response(
            "308 Permanent Redirect",
            f"This port speaks HTTPS only: {location}\n",
            f"Location: {location}\r\n",
        )
    return _response(
        "400 Bad Request",
        f"This port speaks HTTPS only: use https://<this appliance's address>:{port}/\n",
    )


def _response(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


class HttpsOrRedirect(asyncio.Protocol):
    """The first protocol of every connection on an HTTPS port: TLS goes on to ``app`` (a
    factory of aiohttp's request handler); a plain request is answered by ``plain_answer``.
    The whole TLS handshake, or the plain request's head, must arrive within ``timeout``."""

    def __init__(
        self, app: Callable[[], asyncio.BaseProtocol], context: ssl.SSLContext, timeout: float
    ) -> None:
        self._app = app
        self._context = context
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._head = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        self._transport = transport
        self._deadline = loop.time() + self._timeout
        self._timer = loop.call_at(self._deadline, transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if not self._head and data[0] == TLS_HANDSHAKE:
            self._start_tls(transport, data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            end = self._head.find(b"\n\n")
        if end < 0 and len(self._head) < REQUEST_HEAD_LIMIT:
            return
        self._stop_timer()
        port = transport.get_extra_info("sockname")[1]
        transport.write(plain_answer(bytes(self._head[: max(end, 0)]), port))
        transport.close()

    def _start_tls(self, transport: asyncio.Transport, first: bytes) -> None:
        """What ``loop.start_tls`` does, then the bytes already read fed to the TLS side."""
        self._stop_timer()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiter.add_done_callback(_failed_handshake(transport))
        tls = sslproto.SSLProtocol(
            loop,
            self._app(),
            self._context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=max(0.1, self._deadline - loop.time()),  # type: ignore[arg-type]
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(first)
        while view:
            buffer = tls.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            tls.buffer_updated(size)
            view = view[size:]

    def eof_received(self) -> bool | None:
        return False  # a client that closes before deciding: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _failed_handshake(transport: asyncio.Transport) -> Callable[[asyncio.Future[None]], None]:
    """A handshake that fails (or times out) closes the connection, as asyncio's own server
    does; the error is the client's, not ours, so nothing is logged."""

    def done(waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            transport.close()

    return done
