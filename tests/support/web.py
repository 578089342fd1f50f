"""Helpers for the web tests: a real Edge on free ports, a recording HTTP client, and a tiny
Supervisor-like ingress proxy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from argentic_edge.app import Edge
from argentic_edge.config import load_config
from argentic_edge.web import create_app
from tests.support.config import (
    MQTT_PASSWORD,
    PASSWORD,
    SECRETS,
    config_document,
    web_section,
    write_yaml,
)

SUPERVISOR = "127.0.0.3"  # stands in for 172.30.32.2; the whole 127/8 is loopback on Linux


def web_document(
    tmp_path: Path, *, web_options: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Any]:
    """A configuration with the web on (``web_options`` added to its section) and the bridge's
    MQTT password set, so every secret a leak test greps for is in it; other services off."""
    return config_document(
        tmp_path / "data",
        **{
            "bridge": {"enabled": False, "mqtt": {"username": "edge", "password": MQTT_PASSWORD}},
            "web": web_section(**(web_options or {})),
            **sections,
        },
    )


@asynccontextmanager
async def running_edge(
    tmp_path: Path, document: dict[str, Any], text: str | None = None
) -> AsyncIterator[Edge]:
    """An Edge started from a real file, the way ``argentic-edge run --config`` starts it."""
    path = write_yaml(tmp_path / "argentic-edge.yaml", document if text is None else text)
    async with Edge(load_config(path), config_path=str(path)) as edge:
        yield edge


class Recorder:
    """A TestClient whose every response body is kept, so tests can grep them all for secrets."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.bodies: list[str] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        kwargs.setdefault("allow_redirects", False)
        async with self.client.request(method, path, **kwargs) as response:
            text = await response.text(errors="replace")
            self.bodies.append(text)
            self.bodies.append(str(dict(response.headers)))
            return response.status, response.headers, text

    async def login(self, password: str = PASSWORD) -> str:
        """Log in through the form; returns the CSRF token the page carries."""
        status, _, _ = await self.request("POST", "/login", data={"password": password})
        assert status == 303, status
        return await self.csrf()

    async def csrf(self) -> str:
        status, _, page = await self.request("GET", "/")
        assert status == 200
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert match, page[:300]
        return match.group(1)

    def assert_no_secrets(self) -> None:
        for body in self.bodies:
            for secret in SECRETS:
                assert secret not in body, f"a secret leaked into a response: {body[:200]}"


@asynccontextmanager
async def web_client(edge: Edge, **options: Any) -> AsyncIterator[Recorder]:
    """The web application of ``edge`` on a TestServer, with a recording client."""
    server = TestServer(create_app(edge, **options), host="127.0.0.1")
    async with TestClient(server) as client:
        recorder = Recorder(client)
        yield recorder
        recorder.assert_no_secrets()


UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "host",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    }
)


def ingress_proxy(upstream: str, prefix: str, source: str) -> web.Application:
    """What the Supervisor does for ingress: strip ``prefix``, add ``X-Ingress-Path``, forward from
    the Supervisor's own address, and stream the answer back (event streams included)."""
    app = web.Application()

    async def forward(request: web.Request) -> web.StreamResponse:
        rest = request.path[len(prefix) :] or "/"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Ingress-Path"] = prefix
        session = request.app[UPSTREAM_SESSION]
        async with session.request(
            request.method,
            upstream + rest,
            params=request.query,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            return response

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            app[UPSTREAM_SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", prefix + "{tail:.*}", forward)
    return app
