"""Who gets in, what gets out: authentication, CSRF, headers, hostile input, ingress."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from argentic_edge.web import WebService, create_app
from argentic_edge.web.auth import ACCESS, SESSION_COOKIE
from argentic_edge.web.credentials import AUTH_FILE
from tests.support.brokers import free_port
from tests.support.config import PASSWORD, TOKEN
from tests.support.pki import Pki
from tests.support.web import SUPERVISOR, Recorder, running_edge, web_client, web_document

BEARER = {"Authorization": f"Bearer {TOKEN}"}
PARALLEL_LOGINS = 200
LOGOUTS = 257
ATTACKERS = ("127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8")


def quiet(tmp_path: Path, **web_options: object) -> dict[str, object]:
    return web_document(tmp_path, web_options={"enabled": False, **web_options})


async def test_everything_but_health_login_and_assets_needs_credentials(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        for path in (
            "/api/status",
            "/api/config",
            "/metrics",
            "/api/openapi.json",
            "/api/events",
            "/no/such/page",
        ):
            status, headers, body = await client.request("GET", path)
            assert status == 401, path
            assert headers["WWW-Authenticate"] == 'Bearer realm="argentic-edge"'
            if path.startswith("/api/"):
                assert json.loads(body)["error"].startswith("Log in on the page")
        for page in ("/", "/config"):
            status, headers, _ = await client.request("GET", page)
            assert (status, headers["Location"]) == (302, "login")
        for path in ("/healthz", "/login", "/static/style.css", "/static/status.js"):
            status, _, _ = await client.request("GET", path)
            assert status == 200, path
        status, _, _ = await client.request(
            "GET", "/api/status", headers={"Authorization": "Bearer wrong"}
        )
        assert status == 401
        status, _, _ = await client.request("PUT", "/api/config", json={})
        assert status == 401


async def test_login_sets_a_strict_session_cookie_and_logout_ends_it(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        status, _, body = await client.request("POST", "/login", data={"password": "nope"})
        assert status == 401 and "Wrong password." in body
        status, headers, _ = await client.request("POST", "/login", data={"password": PASSWORD})
        assert (status, headers["Location"]) == (303, "./")
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        value = re.search(rf"{SESSION_COOKIE}=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
        csrf = await client.csrf()
        status, _, body = await client.request("GET", "/config")
        assert status == 200 and 'action="logout"' in body
        status, _, _ = await client.request("POST", "/logout", data={"csrf": csrf})
        assert status == 303
        # The old cookie, replayed by someone who kept it, no longer works.
        status, _, _ = await client.request("GET", "/api/status", cookies={SESSION_COOKIE: value})
        assert status == 401


async def test_a_logged_out_cookie_stays_logged_out_after_many_more_logouts(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        first = None
        for _ in range(LOGOUTS):
            status, headers, _ = await client.request("POST", "/login", data={"password": PASSWORD})
            assert status == 303
            value = SimpleCookie(headers["Set-Cookie"])[SESSION_COOKIE].value
            first = first or value
            csrf = await client.csrf()
            status, _, _ = await client.request("POST", "/logout", data={"csrf": csrf})
            assert status == 303
            client.client.session.cookie_jar.clear()
        status, _, _ = await client.request("GET", "/api/status", cookies={SESSION_COOKIE: first})
        assert status == 401


async def test_a_generated_password_is_logged_once_and_stored_hashed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = quiet(tmp_path, password=None)
    caplog.set_level(logging.WARNING)
    async with running_edge(tmp_path, document) as edge, web_client(edge) as client:
        [record] = [r for r in caplog.records if "generated a password" in r.getMessage()]
        password = re.search(r"page: (\S+) ", record.getMessage()).group(1)  # type: ignore[union-attr]
        auth_file = tmp_path / "data" / AUTH_FILE
        assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
        assert password not in auth_file.read_text()
        await client.login(password)
        status, _, body = await client.request("GET", "/api/status")
        assert status == 200 and password not in body  # not among the recent warnings
    caplog.clear()
    async with running_edge(tmp_path, document) as edge, web_client(edge) as client:
        await client.login(password)  # the same password after a restart, not logged again
    assert not [r for r in caplog.records if "generated a password" in r.getMessage()]


async def test_mutating_browser_requests_need_the_csrf_token_and_our_origin(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        csrf = await client.login()
        check = "/api/config/check"
        body = {"json": {"web": {"port": 8100}}}
        status, _, _ = await client.request("POST", check, **body)
        assert status == 403
        status, _, _ = await client.request(
            "POST", check, headers={"X-CSRF-Token": "x" * 43}, **body
        )
        assert status == 403
        status, _, _ = await client.request(
            "POST", check, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}, **body
        )
        assert status == 403
        status, _, _ = await client.request(
            "POST", check, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}, **body
        )
        assert status == 403
        origin = str(client.client.make_url("/").origin())
        status, _, _ = await client.request(
            "POST", check, headers={"X-CSRF-Token": csrf, "Origin": origin}, **body
        )
        assert status == 200
        status, _, _ = await client.request("POST", "/logout")
        assert status == 403
        # A script with the token carries no ambient credential: no CSRF token needed.
        client.client.session.cookie_jar.clear()
        status, _, _ = await client.request("POST", check, headers=BEARER, **body)
        assert status == 200


async def test_login_attempts_are_rate_limited_per_client(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        for _ in range(5):
            status, _, _ = await client.request("POST", "/login", data={"password": "guess"})
            assert status == 401
        status, headers, body = await client.request("POST", "/login", data={"password": PASSWORD})
        assert status == 429 and "Too many attempts" in body
        assert 55 <= int(headers["Retry-After"]) <= 61


async def test_parallel_logins_from_one_address_get_no_more_checks_than_the_limit(
    tmp_path: Path,
) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        credentials = client.client.server.app[ACCESS].credentials
        checks = []
        check_password = credentials.check_password

        def counted(given: str) -> bool:
            checks.append(given)
            return check_password(given)

        credentials.check_password = counted  # type: ignore[method-assign]
        answers = await asyncio.gather(
            *(
                client.request("POST", "/login", data={"password": f"guess-{n}"})
                for n in range(PARALLEL_LOGINS)
            )
        )
        statuses = sorted(status for status, _, _ in answers)
        limit = client.client.server.app[ACCESS].limiter.attempts
        assert len(checks) <= limit
        assert statuses == [401] * len(checks) + [429] * (PARALLEL_LOGINS - len(checks))


async def test_failed_logins_cannot_fill_the_recent_warnings(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge:
        server = TestServer(create_app(edge), host="127.0.0.1")
        await server.start_server()
        try:
            for address in ATTACKERS:
                connector = aiohttp.TCPConnector(local_addr=(address, 0))
                async with aiohttp.ClientSession(connector=connector) as session:
                    for _ in range(5):
                        async with session.post(
                            server.make_url("/login"), data={"password": "guess"}
                        ) as response:
                            assert response.status == 401
            async with (
                aiohttp.ClientSession(headers=BEARER) as session,
                session.get(server.make_url("/api/status")) as response,
            ):
                document = await response.json()
            warnings = [
                w
                for w in document["warnings"]
                if "failed login" in w["message"]
                and any(address in w["message"] for address in ATTACKERS)
            ]
            assert len(warnings) == 1, warnings
            assert server.app[ACCESS].limiter.to_dict()["failed"] == 5 * len(ATTACKERS)
        finally:
            await server.close()


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        responses = [
            await client.request("GET", path)
            for path in ("/login", "/static/style.css", "/api/status", "/", "/healthz")
        ]
        responses.append(await client.request("GET", "/api/status", headers=BEARER))
        for _, headers, _ in responses:
            assert headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
            assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["X-Frame-Options"] == "SAMEORIGIN"
            assert headers["Referrer-Policy"] == "same-origin"
        _, _, page = await client.request("GET", "/login")
        assert "<script>" not in page and " on" + "click=" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/static/../auth.py",
        "/static/%2e%2e/auth.py",
        "/static/%2e%2e%2fauth.py",
        "/static/..%2f..%2fconfig.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
    ],
)
async def test_static_files_stay_inside_their_directory(tmp_path: Path, path: str) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        status, _, body = await client.request("GET", URL(path, encoded=True), headers=BEARER)
        assert status in (403, 404), (path, status)
        assert "import" not in body and "root:" not in body


async def test_hostile_bodies_get_4xx_never_500(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        put = "/api/config"
        yaml_type = {**BEARER, "Content-Type": "application/yaml"}
        json_type = {**BEARER, "Content-Type": "application/json"}
        cases = [
            (json_type, b"x" * 300_000, 413),
            (json_type, b'{"web": ', 400),
            (json_type, b"[" * 100_000, 400),
            (json_type, b'{"web": "\xff"}', 400),
            ({**BEARER, "Content-Type": "image/png"}, b"\x89PNG", 415),
            (yaml_type, b"web: [unclosed\n", 422),
            (yaml_type, b"- a list\n- not a mapping\n", 422),
            (yaml_type, _billion_laughs(), 422),
            (yaml_type, b"web:\n  password: *undefined\n", 422),
            (json_type, b'"just a string"', 422),
        ]
        for headers, data, expected in cases:
            status, _, body = await client.request("PUT", put, data=data, headers=headers)
            assert status == expected, (data[:30], status, body[:200])
        status, _, _ = await client.request("POST", "/login", data={"password": "p" * 5000})
        assert status == 400
        assert edge.health() == (True, [])


async def test_deeply_nested_json_gets_400_never_500(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge, web_client(edge) as client:
        headers = {**BEARER, "Content-Type": "application/json"}
        bodies = [
            b"[" * 500 + b"]" * 500,
            b'{"a":' * 500 + b"1" + b"}" * 500,
            b'{"web": ' + b"[" * 900 + b"]" * 900 + b"}",
        ]
        for method, path in (("PUT", "/api/config"), ("POST", "/api/config/check")):
            for body in bodies:
                status, _, text = await client.request(method, path, data=body, headers=headers)
                assert status == 400, (method, body[:12], status)
                assert "levels" in json.loads(text)["error"]
        assert edge.health() == (True, [])


def _billion_laughs() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{','.join(['*' + previous] * 9)}]")
    return ("\n".join(lines) + "\n").encode()


async def test_ingress_trusts_only_the_supervisor(tmp_path: Path) -> None:
    document = quiet(tmp_path, ingress=True, password=None)
    async with running_edge(tmp_path, document) as edge:
        server = TestServer(create_app(edge, supervisor_address=SUPERVISOR), host="127.0.0.1")
        connector = aiohttp.TCPConnector(local_addr=(SUPERVISOR, 0))
        async with TestClient(server, connector=connector) as raw:
            supervisor = Recorder(raw)
            status, _, page = await supervisor.request(
                "GET", "/", headers={"X-Ingress-Path": "/api/hassio_ingress/abc"}
            )
            assert status == 200 and 'action="logout"' not in page
            csrf = re.search(r'csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            status, _, _ = await supervisor.request("POST", "/api/config/check", json={})
            assert status == 403
            status, _, _ = await supervisor.request(
                "POST", "/api/config/check", json={}, headers={"X-CSRF-Token": csrf}
            )
            assert status == 200
            supervisor.assert_no_secrets()
        async with TestClient(
            TestServer(create_app(edge, supervisor_address=SUPERVISOR), host="127.0.0.1")
        ) as raw:
            other = Recorder(raw)
            for path in ("/", "/api/status", "/login", "/static/style.css"):
                status, _, _ = await other.request("GET", path)
                assert status == 403, path
            status, _, _ = await other.request("GET", "/healthz")
            assert status == 200
            status, _, _ = await other.request("GET", "/metrics", headers=BEARER)
            assert status == 200
        assert not (tmp_path / "data" / AUTH_FILE).read_text().count('"password"')


def _broken_bridge(tmp_path: Path, **web_options: object) -> dict[str, object]:
    """A configuration whose bridge points at a closed port: unhealthy, with a reason that
    names the broker's address."""
    document = quiet(tmp_path, **web_options)
    document["bridge"] = {
        "enabled": True,
        "mqtt": {"broker_address": "127.0.0.1", "port": free_port()},
    }
    return document


async def _health(client: Recorder, **kwargs: object) -> tuple[int, dict[str, object]]:
    status, _, body = await client.request("GET", "/healthz", **kwargs)
    return status, json.loads(body)


async def test_healthz_tells_reasons_only_to_who_may_see_the_status(tmp_path: Path) -> None:
    document = _broken_bridge(tmp_path)
    port = str(document["bridge"]["mqtt"]["port"])  # type: ignore[index]
    async with running_edge(tmp_path, document) as edge, web_client(edge) as client:
        assert await _health(client) == (503, {"ok": False})
        status, answer = await _health(client, headers=BEARER)
        assert status == 503 and port in str(answer["reasons"])
        await client.login()
        status, answer = await _health(client)
        assert status == 503 and port in str(answer["reasons"])


async def test_healthz_tells_reasons_to_the_supervisor_only_in_add_on_mode(tmp_path: Path) -> None:
    document = _broken_bridge(tmp_path, ingress=True, password=None)
    port = str(document["bridge"]["mqtt"]["port"])  # type: ignore[index]
    async with running_edge(tmp_path, document) as edge:
        connector = aiohttp.TCPConnector(local_addr=(SUPERVISOR, 0))
        async with TestClient(
            TestServer(create_app(edge, supervisor_address=SUPERVISOR), host="127.0.0.1"),
            connector=connector,
        ) as raw:
            status, answer = await _health(Recorder(raw))
            assert status == 503 and port in str(answer["reasons"])
        async with TestClient(
            TestServer(create_app(edge, supervisor_address=SUPERVISOR), host="127.0.0.1")
        ) as raw:
            assert await _health(Recorder(raw)) == (503, {"ok": False})


@pytest.fixture
def certificates(tmp_path: Path) -> Pki:
    """In the place of the certificates service: a server certificate and its SSLContext."""
    return Pki.create(tmp_path / "certs")


async def test_https_with_the_certificates_service_marks_the_cookie_secure(
    tmp_path: Path, certificates: Pki
) -> None:
    async with running_edge(tmp_path, quiet(tmp_path)) as edge:
        # The Edge's own web is off; this one is started by hand beside a certificates service.
        port = edge.config.web.port
        service = WebService(edge.config.web, edge, tls=certificates.ssl_context)
        await service.start()
        try:
            context = certificates.client_context()
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"https://127.0.0.1:{port}/login",
                    data={"password": PASSWORD},
                    ssl=context,
                    allow_redirects=False,
                ) as response,
            ):
                assert response.status == 303
                assert "Secure" in response.headers["Set-Cookie"]
            assert service.status().https is True
            assert service.url == f"https://127.0.0.1:{port}/"
        finally:
            await service.stop()
