"""``http://`` typed at the HTTPS port: a redirect to ``https://`` (or a hint), never an empty
reply, and never the application itself over plain HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from argentic_edge.web import WebService, service
from tests.support.pki import Pki
from tests.support.web import running_edge, web_document


@asynccontextmanager
async def https_service(tmp_path: Path) -> AsyncIterator[tuple[WebService, Pki]]:
    """The web service on HTTPS with a test CA's certificate, on a running appliance."""
    pki = Pki.create(tmp_path / "certs")
    document = web_document(tmp_path, web_options={"enabled": False})
    async with running_edge(tmp_path, document) as edge:
        web = WebService(edge.config.web, edge, tls=pki.ssl_context)
        await web.start()
        try:
            yield web, pki
        finally:
            await web.stop()


@pytest.fixture
async def https_web(tmp_path: Path) -> AsyncIterator[tuple[WebService, Pki]]:
    async with https_service(tmp_path) as started:
        yield started


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=False
    )


async def test_plain_http_is_redirected_to_https_at_the_same_host_port_and_path(
    https_web: tuple[WebService, Pki],
) -> None:
    web, pki = https_web
    port = web.port
    assert port is not None
    loop = asyncio.get_running_loop()
    head = await loop.run_in_executor(
        None, _curl, "-o", "/dev/null", "-D", "-", f"http://localhost:{port}/api/status?x=1"
    )
    assert head.stdout.startswith("HTTP/1.1 308"), head
    assert f"Location: https://localhost:{port}/api/status?x=1" in head.stdout, head.stdout
    # curl following the redirect, checking the certificate: the README's health check.
    followed = await loop.run_in_executor(
        None, _curl, "-L", "--cacert", str(pki.ca), f"http://localhost:{port}/healthz"
    )
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)["ok"] is True
    # and HTTPS itself is untouched on that port
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://localhost:{port}/healthz", ssl=pki.client_context()) as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: evil.example\x00/x\r\n\r\n",  # not a host name
        b"GET http://elsewhere/ HTTP/1.1\r\nHost: localhost\r\n\r\n",  # not a path
        b"\r\n\r\n",
    ],
    ids=["no-host", "bad-host", "absolute-target", "empty"],
)
async def test_a_plain_request_naming_no_usable_host_or_path_gets_a_hint(
    https_web: tuple[WebService, Pki], request_bytes: bytes
) -> None:
    web, _ = https_web
    assert web.port is not None
    answer = await _raw(web.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"Location" not in answer
    assert answer.endswith(
        f"This port speaks HTTPS only: use https://<this appliance's address>:{web.port}/\n".encode()
    ), answer


async def test_a_plain_request_never_reaches_the_application(
    https_web: tuple[WebService, Pki],
) -> None:
    """The login form posted over plain HTTP is not read: the answer is only the redirect,
    which carries no cookie."""
    web, _ = https_web
    assert web.port is not None
    form = b"password=whatever"
    answer = await _raw(
        web.port,
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: "
        + str(len(form)).encode()
        + b"\r\n\r\n"
        + form,
    )
    assert answer.startswith(b"HTTP/1.1 308 "), answer
    assert b"Set-Cookie" not in answer


async def test_a_plain_client_that_sends_half_a_request_is_closed_after_the_idle_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "IDLE_TIMEOUT", 1.0)
    async with https_service(tmp_path) as (web, _):
        assert web.port is not None
        started = asyncio.get_running_loop().time()
        assert await _raw(web.port, b"GET /heal") == b""
        assert asyncio.get_running_loop().time() - started < 5
