"""What one careless or hostile client can do to the web listener, and what it cannot: idle and
half-open connections are closed after a timeout, connections past the cap are closed at once and
counted, and the bus keeps its file descriptors whatever the web is sent."""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
import zmq

from argentic_edge.web import WebService, security, service
from argentic_edge.web.auth import SESSION_COOKIE
from tests.support.appliance import Appliance, appliance_document
from tests.support.config import TOKEN
from tests.support.pki import Pki
from tests.support.web import running_edge, web_document

NOFILE = 256  # the process's descriptor limit for the whole test: a small device's setting
CLIENTS = 300
CLOSED_WITHIN = 30.0  # far above the idle timeout the test sets; aiohttp's own is an hour


def _forwarded(
    pub: zmq.Socket[bytes], sub: zmq.Socket[bytes], mark: bytes, timeout: float = 10.0
) -> bool:
    """Publish ``mark`` until the subscriber receives it: the bus forwards end to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send(b"limits/probe " + mark)
        if sub.poll(200) and sub.recv().endswith(mark):
            return True
    return False


def _healthz_answers(appliance: Appliance, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if appliance.health()[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _connections_released(appliance: Appliance, timeout: float = 10.0) -> bool:
    """Every closed connection gave its slot back (only the status request's own is open)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if appliance.status()["web"]["connections"]["open"] <= 1:
            return True
        time.sleep(0.2)
    return False


def test_idle_and_half_open_connections_cannot_take_down_the_web_or_the_bus(tmp_path: Path) -> None:
    document = appliance_document(tmp_path / "data", certificates={"enabled": False})
    appliance = Appliance(
        tmp_path, document, prefix=["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    )
    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    for sock in (pub, sub):
        sock.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"limits/")
    clients: list[socket.socket] = []
    try:
        appliance.start()
        appliance.wait_healthy()
        pub.connect(appliance.bus_publish)
        sub.connect(appliance.bus_subscribe)
        assert _forwarded(pub, sub, b"before")
        for index in range(CLIENTS):
            client = socket.create_connection(("127.0.0.1", appliance.web_port), timeout=5)
            if index % 2:
                client.send(b"GET /heal")  # half a request line, never finished (slow loris)
            clients.append(client)
        assert _forwarded(pub, sub, b"during"), appliance.log_tail()
        assert _healthz_answers(appliance, timeout=30.0), appliance.log_tail()
        assert _forwarded(pub, sub, b"after"), appliance.log_tail()
        web = appliance.status()["web"]["connections"]
        assert web["limit"] < NOFILE
        assert web["refused"] > 0
        code, metrics = appliance.request("GET", "/metrics")
        assert code == 200 and f"argentic_edge_web_connection_limit {web['limit']}" in metrics
        for client in clients:
            client.close()
        assert _connections_released(appliance), appliance.status()["web"]
    finally:
        for client in clients:
            client.close()
        pub.close()
        sub.close()
        context.term()
        appliance.stop()
    appliance.said_once("web: connection limit")
    assert appliance.log_path.stat().st_size < 64 * 1024


def _session_cookie(appliance: Appliance) -> str:
    """A real session cookie, from logging in through the form."""
    connection = http.client.HTTPConnection("127.0.0.1", appliance.web_port, timeout=10)
    password = appliance.document["web"]["password"]
    connection.request(
        "POST",
        "/login",
        body=urlencode({"password": password}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = connection.getresponse()
    assert response.status == 303, response.status
    cookie = SimpleCookie(response.headers["Set-Cookie"])[SESSION_COOKIE].value
    connection.close()
    return cookie


def _send_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_malformed_requests_are_logged_once_without_tracebacks_or_credentials(
    tmp_path: Path,
) -> None:
    document = appliance_document(tmp_path / "data", certificates={"enabled": False})
    appliance = Appliance(tmp_path, document)
    try:
        appliance.start()
        cookie = _session_cookie(appliance)
        malformed = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\x01\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nCookie: "
            + SESSION_COOKIE.encode()
            + b"="
            + cookie.encode()
            + b"\x01\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for _ in range(25):
            for request in malformed:
                assert _send_raw(appliance.web_port, request).split(b" ")[1] == b"400", request
        requests = appliance.status()["web"]["requests"]
        assert requests["malformed"] == 25 * len(malformed)
        code, metrics = appliance.request("GET", "/metrics")
        assert code == 200
        assert f"argentic_edge_web_requests_malformed_total {25 * len(malformed)}" in metrics
    finally:
        appliance.stop()
    log = appliance.said_once("malformed HTTP request")
    assert TOKEN not in log and cookie not in log and cookie.split(".")[1] not in log


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_connections_without_a_request_are_closed_after_the_idle_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    monkeypatch.setattr(service, "IDLE_TIMEOUT", 1.0)
    document = web_document(tmp_path, web_options={"enabled": False})
    openings = [b"", b"GET /heal", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"]
    async with running_edge(tmp_path, document) as edge:
        tls_context = None
        if tls:  # a TLS client that never sends its ClientHello
            pki = Pki.create(tmp_path / "certs")
            tls_context = pki.ssl_context
            openings = [b""]
        web = WebService(edge.config.web, edge, tls=tls_context)
        await web.start()
        try:
            for opening in openings:
                reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
                writer.write(opening)
                answer = await asyncio.wait_for(reader.read(), CLOSED_WITHIN)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 200") == opening.endswith(b"\r\n\r\n")
        finally:
            await web.stop()


def test_running_out_of_descriptors_elsewhere_is_logged_once_and_counted(tmp_path: Path) -> None:
    """Clients of the bus take every descriptor the web's cap left; the web's failed accepts are
    then logged once and counted (asyncio alone logged up to 128 tracebacks per loop pass)."""
    document = appliance_document(tmp_path / "data", certificates={"enabled": False})
    appliance = Appliance(
        tmp_path, document, prefix=["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    )
    hogs: list[socket.socket] = []
    try:
        appliance.start()
        appliance.wait_healthy()
        for _ in range(CLIENTS):
            hogs.append(
                socket.create_connection(("127.0.0.1", document["messaging"]["port"]), timeout=5)
            )
        for _ in range(5):
            try:
                with socket.create_connection(
                    ("127.0.0.1", appliance.web_port), timeout=1
                ) as client:
                    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    client.recv(100)
            except OSError:
                pass  # shed, or left waiting while the process had no descriptor to spare
        for hog in hogs:
            hog.close()
        assert _healthz_answers(appliance, timeout=30.0), appliance.log_tail()
        assert appliance.status()["web"]["connections"]["exhausted"] > 0
    finally:
        for hog in hogs:
            hog.close()
        appliance.stop()
    appliance.said_once("web: cannot accept connections")
    assert appliance.log_path.stat().st_size < 64 * 1024


async def test_a_body_that_stops_arriving_is_answered_408_after_the_body_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(security, "BODY_TIMEOUT", 1.0)
    async with running_edge(tmp_path, web_document(tmp_path)) as edge:
        port = edge.config.web.port
        for path in ("/login", "/api/config/check"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                "password=".encode()
            )
            answer = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN)
            writer.write(b"x" * 91)  # the rest, late: aiohttp would otherwise linger 10 s for it
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.1 408"), answer
