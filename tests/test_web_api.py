"""The JSON API, metrics, health and the configuration editor, against a real Edge."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
import zmq
from openapi_spec_validator import validate

from argentic_edge.app import Edge
from argentic_edge.client.bus import publish
from argentic_edge.config import MASK, parse_config, to_dict
from argentic_edge.web import WebError, create_app
from argentic_edge.web.openapi import document as openapi_document
from tests.support.appliance import environment
from tests.support.bridge import wait_until
from tests.support.brokers import Mosquitto, free_port
from tests.support.config import MQTT_PASSWORD, PASSWORD, SECRETS, TOKEN, write_yaml
from tests.support.web import running_edge, web_client, web_document

BEARER = {"Authorization": f"Bearer {TOKEN}"}
COMMENTED = """\
# The kitchen appliance.
node_name: test-node   # shown on the page
data_dir: {data}
messaging:
  broker_address: 127.0.0.1
  port: {port}
  backend_port: {backend}
  high_water_mark: 1000   # the default
  connect_timeout: 500
bridge:
  enabled: false
  mqtt:
    username: edge
    password: '{mqtt}'
discovery: {{enabled: false}}
certificates: {{enabled: false}}
web:
  enabled: false
  password: {password!r}
  api_token: ${{TEST_WEB_TOKEN}}
"""


def commented_text(tmp_path: Path) -> str:
    return COMMENTED.format(
        data=tmp_path / "data",
        port=free_port(),
        backend=free_port(),
        mqtt=MQTT_PASSWORD,
        password=PASSWORD,
    )


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEB_TOKEN", TOKEN)


def quiet_web(tmp_path: Path) -> dict[str, object]:
    """Edge's own web service off: these tests serve its application on a TestServer."""
    return web_document(
        tmp_path,
        web_options={"enabled": False},
        messaging={
            "broker_address": "127.0.0.1",
            "port": free_port(),
            "backend_port": free_port(),
            "connect_timeout": 500,
        },
    )


async def test_status_has_every_section_and_counts_bus_traffic(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
        context = zmq.Context()
        for index in range(3):
            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda i=index: publish(
                    context, endpoint, "_ping/agent-1", b'{"type": "INFO"}', wait=2.0
                ),
            )
        context.term()
        await edge.services["agents"].wait_until(  # type: ignore[attr-defined]
            lambda r: r.messages == 3, 5.0
        )
        status, _, body = await client.request("GET", "/api/status", headers=BEARER)
        assert status == 200
        document = json.loads(body)
        assert {"node", "bus", "bridge", "peers", "certificates", "agents"} <= document.keys()
        assert document["node"]["name"] == "test-node"
        assert document["bridge"] == {"enabled": False}
        assert document["bus"]["counters"]["frontend"]["messages_in"] == 3
        assert document["agents"]["agents"][0]["id"] == "agent-1"
        assert document["health"]["ok"] is True

        status, headers, text = await client.request("GET", "/metrics", headers=BEARER)
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'argentic_edge_bus_messages_total{side="frontend",direction="in"} 3' in text
        assert "argentic_edge_up 1" in text
        assert "argentic_edge_agents_seen 1" in text
        assert 'argentic_edge_service_up{service="bus"} 1' in text
        assert_prometheus_text(text)


def assert_prometheus_text(text: str) -> None:
    """Every sample line well formed, every family introduced once by HELP and TYPE."""
    families: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
            continue
        if line.startswith("# HELP"):
            continue
        assert re.fullmatch(
            r'argentic_edge_[a-z_]+(\{([a-z_]+="[^"\n]*",?)+\})? -?[0-9.e+]+', line
        ), line
        assert re.match(r"[a-z_]+", line).group(0) == families[-1], line  # type: ignore[union-attr]
    assert len(families) == len(set(families))


async def test_healthz_needs_no_login_and_reports_a_stopped_bus(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        status, _, body = await client.request("GET", "/healthz")
        assert (status, json.loads(body)) == (200, {"ok": True})
        await edge.services["bus"].bus.stop()  # type: ignore[attr-defined]
        status, _, body = await client.request("GET", "/healthz")
        assert (status, json.loads(body)) == (503, {"ok": False})
        status, _, body = await client.request("GET", "/healthz", headers=BEARER)
        assert status == 503
        assert json.loads(body)["reasons"] == ["bus: the bus is stopped"]


async def test_status_healthz_and_metrics_name_each_uplink(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Two uplinks, one of them on a port where no broker listens: /healthz names that one,
    /api/status lists both, /metrics labels every uplink metric with its uplink."""
    document = quiet_web(tmp_path)
    document["bridge"] = {"enabled": False, "ha_discovery": False}
    document["uplinks"] = [
        {
            "name": name,
            "protocol": "mqtt",
            "broker_address": "127.0.0.1",
            "port": port,
            "connect_retry_delay": 0.1,
        }
        for name, port in (("home", mosquitto.port), ("away", free_port()))
    ]
    async with running_edge(tmp_path, document) as edge, web_client(edge) as client:
        await wait_until(
            lambda: [u.state for u in edge.uplinks()] == ["connected", "backing off"],
            what="one uplink up and one backing off",
        )
        status, _, body = await client.request("GET", "/healthz", headers=BEARER)
        (reason,) = json.loads(body)["reasons"]
        assert status == 503 and reason.startswith("uplink:away: backing off"), reason
        assert "refused the connection" in reason
        status, _, body = await client.request("GET", "/api/status", headers=BEARER)
        uplinks = json.loads(body)["uplinks"]
        assert [(u["name"], u["protocol"], u["state"]) for u in uplinks] == [
            ("home", "mqtt", "connected"),
            ("away", "mqtt", "backing off"),
        ]
        assert uplinks[1]["buffer"]["messages"] == 0 and uplinks[1]["buffer"]["oldest_age"] is None
        assert json.loads(body)["bridge"]["name"] == "home"  # the first MQTT uplink, as before
        status, _, text = await client.request("GET", "/metrics", headers=BEARER)
        assert 'argentic_edge_uplink_connections{uplink="home",protocol="mqtt"} 1' in text
        assert 'argentic_edge_uplink_connections{uplink="away",protocol="mqtt"} 0' in text
        assert 'argentic_edge_service_up{service="uplink:away"} 0' in text
        assert_prometheus_text(text)


async def test_the_editor_shows_the_raw_file_with_secrets_masked(
    tmp_path: Path, token_env: None
) -> None:
    text = commented_text(tmp_path)
    async with running_edge(tmp_path, {}, text) as edge, web_client(edge) as client:
        status, _, body = await client.request("GET", "/api/config", headers=BEARER)
        assert status == 200
        view = json.loads(body)
        assert "# The kitchen appliance." in view["yaml"] and "# the default" in view["yaml"]
        assert "${TEST_WEB_TOKEN}" in view["yaml"]  # a reference is shown as written
        assert view["yaml"].count('"********"') == 2
        assert view["document"]["web"]["password"] == MASK
        assert view["document"]["web"]["api_token"] == "${TEST_WEB_TOKEN}"
        fields = {f["path"]: f for f in view["fields"]}
        assert fields["bridge.mqtt.password"]["value"] == MASK
        assert fields["messaging.high_water_mark"]["value"] == 1000
        status, headers, body = await client.request(
            "GET", "/api/config", headers={**BEARER, "Accept": "application/yaml"}
        )
        assert headers["Content-Type"].startswith("application/yaml") and body == view["yaml"]


async def test_a_rejected_change_leaves_the_file_and_the_running_config(
    tmp_path: Path, token_env: None
) -> None:
    text = commented_text(tmp_path)
    async with running_edge(tmp_path, {}, text) as edge, web_client(edge) as client:
        before = edge.config
        _, _, body = await client.request("GET", "/api/config", headers=BEARER)
        document = json.loads(body)["document"]
        document["web"]["port"] = 99999
        document["messaging"]["high_water_mark"] = "lots"
        document["web"]["password"] = [PASSWORD]  # a secret of the wrong type: still masked
        status, _, body = await client.request("PUT", "/api/config", json=document, headers=BEARER)
        assert status == 422
        problems = {p["path"]: p for p in json.loads(body)["problems"]}
        assert set(problems) == {"web.port", "messaging.high_water_mark", "web.password"}
        assert problems["web.port"]["expected"] == "expected a TCP port from 1 to 65535"
        assert problems["web.password"]["value"] == MASK
        assert edge.config is before
        assert (tmp_path / "argentic-edge.yaml").read_text() == text
        assert not (tmp_path / "argentic-edge.yaml.bak").exists()


async def test_a_good_document_is_applied_then_saved_with_the_secrets_kept(
    tmp_path: Path, token_env: None
) -> None:
    text = commented_text(tmp_path)
    path = tmp_path / "argentic-edge.yaml"
    async with running_edge(tmp_path, {}, text) as edge, web_client(edge) as client:
        _, _, body = await client.request("GET", "/api/config", headers=BEARER)
        document = json.loads(body)["document"]
        document["messaging"]["high_water_mark"] = 2000
        status, _, body = await client.request("PUT", "/api/config", json=document, headers=BEARER)
        assert status == 200, body
        saved = json.loads(body)
        assert saved["restarted"][:2] == ["bus", "agents"]
        assert saved["backup"] == str(path) + ".bak"
        assert edge.config.messaging.high_water_mark == 2000
        assert edge.config.bridge.mqtt.password is not None
        assert edge.config.bridge.mqtt.password.reveal() == MQTT_PASSWORD
        stored = yaml.safe_load(path.read_text())
        assert stored["web"]["password"] == PASSWORD
        assert stored["web"]["api_token"] == "${TEST_WEB_TOKEN}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (tmp_path / "argentic-edge.yaml.bak").read_text() == text
        status, _, body = await client.request("GET", "/api/status", headers=BEARER)
        assert json.loads(body)["bus"]["mode"] == "embedded"


async def test_yaml_edits_keep_comments_references_and_secrets_as_written(
    tmp_path: Path, token_env: None
) -> None:
    text = commented_text(tmp_path)
    async with running_edge(tmp_path, {}, text) as edge, web_client(edge) as client:
        _, _, masked = await client.request(
            "GET", "/api/config", headers={**BEARER, "Accept": "application/yaml"}
        )
        edited = masked.replace("high_water_mark: 1000", "high_water_mark: 3000")
        status, _, body = await client.request(
            "PUT",
            "/api/config",
            data=edited.encode(),
            headers={**BEARER, "Content-Type": "application/yaml"},
        )
        assert status == 200, body
        assert (tmp_path / "argentic-edge.yaml").read_text() == text.replace(
            "high_water_mark: 1000", "high_water_mark: 3000"
        )
        assert edge.config.messaging.high_water_mark == 3000


async def test_a_mask_with_nothing_stored_behind_it_is_a_problem(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        _, _, body = await client.request("GET", "/api/config", headers=BEARER)
        document = json.loads(body)["document"]
        document["bridge"]["mqtt"]["tls_params"] = {"ciphers": "HIGH"}
        document["llm"] = {"google_api_key": MASK}  # Argentic's own section, secret by name
        status, _, body = await client.request("PUT", "/api/config", json=document, headers=BEARER)
        assert status == 422
        assert [p["path"] for p in json.loads(body)["problems"]] == ["llm.google_api_key"]


async def test_a_change_that_cannot_start_is_rolled_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A port in use is the user's to fix: one log line naming it, no traceback."""
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        before, text = edge.config, (tmp_path / "argentic-edge.yaml").read_text()
        _, _, body = await client.request("GET", "/api/config", headers=BEARER)
        document = json.loads(body)["document"]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            document["messaging"]["port"] = taken.getsockname()[1]
            status, _, body = await client.request(
                "PUT", "/api/config", json=document, headers=BEARER
            )
        assert status == 409
        assert "already in use" in json.loads(body)["error"]
        failures = [r for r in caplog.records if "failed to start" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is None, failures
        assert "is already in use" in failures[0].getMessage()
        assert edge.config is before
        assert (tmp_path / "argentic-edge.yaml").read_text() == text
        assert edge.health() == (True, [])


async def test_check_validates_without_applying(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        before = edge.config
        status, _, body = await client.request(
            "POST",
            "/api/config/check",
            data=b"messaging: {high_water_mark: 5}\n",
            headers={**BEARER, "Content-Type": "application/yaml"},
        )
        assert (status, json.loads(body)) == (200, {"valid": True})
        status, _, body = await client.request(
            "POST",
            "/api/config/check",
            json={"certificates": {"certfile": "/nonexistent.pem", "keyfile": "/nonexistent.key"}},
            headers=BEARER,
        )
        assert status == 422  # the file checks of check-config, too
        assert {p["path"] for p in json.loads(body)["problems"]} == {
            "certificates.certfile",
            "certificates.keyfile",
        }
        assert edge.config is before


async def test_without_a_file_the_editor_saves_into_the_data_dir(tmp_path: Path) -> None:
    config = parse_config(quiet_web(tmp_path))
    async with Edge(config) as edge, web_client(edge) as client:
        status, _, body = await client.request("GET", "/api/config", headers=BEARER)
        assert json.loads(body)["exists"] is False
        document = quiet_web(tmp_path)
        document["messaging"] = {**to_dict(config.messaging), "high_water_mark": 10}
        status, _, body = await client.request("PUT", "/api/config", json=document, headers=BEARER)
        assert status == 200, body
        target = tmp_path / "data" / "argentic-edge.yaml"
        assert edge.config_path == str(target) and json.loads(body)["backup"] is None
        assert yaml.safe_load(target.read_text())["messaging"]["high_water_mark"] == 10


async def test_peers_without_discovery_say_so(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        status, _, body = await client.request("POST", "/api/peers/kitchen/approve", headers=BEARER)
        assert (status, json.loads(body)) == (409, {"error": "discovery is disabled"})
        status, _, _ = await client.request("POST", "/api/peers/kitchen/reboot", headers=BEARER)
        assert status == 404


async def test_the_event_stream_sends_the_status(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        async with client.client.get("/api/events", headers=BEARER) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            async with asyncio.timeout(5):
                async for line in response.content:
                    if line.startswith(b"data: "):
                        document = json.loads(line[6:])
                        break
        assert document["node"]["name"] == "test-node"
        assert document["web"] == {"enabled": False}


async def test_openapi_describes_exactly_the_api_routes(tmp_path: Path) -> None:
    validate(openapi_document())  # a valid OpenAPI 3.0 document
    edge = Edge(parse_config(quiet_web(tmp_path)))
    app = create_app(edge)
    edge.context.term()
    described = {re.sub(r"\{[^}]+\}", "{}", p) for p in openapi_document()["paths"]}
    routed = {
        re.sub(r"\{[^}]+\}", "{}", r.canonical)
        for r in app.router.resources()
        if r.canonical.startswith(("/api/", "/metrics", "/healthz"))
    }
    assert described == routed - {"/api/events"}
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        status, _, body = await client.request("GET", "/api/openapi.json", headers=BEARER)
        assert status == 200 and json.loads(body)["openapi"] == "3.0.3"


async def test_the_web_service_survives_a_save_from_its_own_page(tmp_path: Path) -> None:
    """A save restarts the web service from inside its own request: the answer still arrives,
    the new service answers next, and the browser's session carries over."""
    document = web_document(tmp_path)
    port = document["web"]["port"]  # type: ignore[index]
    base = f"http://127.0.0.1:{port}"
    async with (
        running_edge(tmp_path, document),
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
    ):
        async with session.post(
            f"{base}/login", data={"password": PASSWORD}, allow_redirects=False
        ) as response:
            assert response.status == 303
        async with session.get(f"{base}/") as response:
            token = re.search(r'csrf-token" content="([^"]+)"', await response.text()).group(1)  # type: ignore[union-attr]
        async with session.get(f"{base}/api/config") as response:
            view = await response.json()
        view["document"]["node_name"] = "renamed-node"  # read live by the pages: no restart
        view["document"]["web"]["api_token"] = "a-new-token-for-scripts-0123456789"  # restarts
        async with session.put(
            f"{base}/api/config",
            json=view["document"],
            headers={"X-CSRF-Token": token, "Origin": base},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["restarted"] == ["web"]
        async with session.get(f"{base}/api/status") as response:
            assert response.status == 200
            status = await response.json()
        assert status["node"]["name"] == "renamed-node"
        assert status["web"]["port"] == port
        body = json.dumps(view)
        assert not any(secret in body for secret in SECRETS)


async def test_a_taken_web_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        document = web_document(tmp_path, web_options={"port": port})
        with pytest.raises(
            WebError,
            match=rf"web port {port} \(web.port\) on 127.0.0.1 is "
            "already in use",
        ):
            async with running_edge(tmp_path, document):
                pass


def test_the_command_line_names_a_taken_web_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_yaml(
            tmp_path / "argentic-edge.yaml", web_document(tmp_path, web_options={"port": port})
        )
        result = subprocess.run(
            [sys.executable, "-m", "argentic_edge", "run", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=environment(),
        )
    assert result.returncode == 1
    assert f"web port {port} (web.port) on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


async def test_recent_warnings_of_the_appliance_are_shown(tmp_path: Path) -> None:
    async with running_edge(tmp_path, quiet_web(tmp_path)) as edge, web_client(edge) as client:
        logger = logging.getLogger("argentic_edge.bridge.service")
        logger.warning("broker %s refused the connection", "mqtt.lan")
        logger.info("not a warning")
        logging.getLogger("elsewhere").error("not the appliance's")
        _, _, body = await client.request("GET", "/api/status", headers=BEARER)
        [newest, *_] = json.loads(body)["warnings"]
        assert (newest["level"], newest["logger"], newest["message"]) == (
            "WARNING",
            "argentic_edge.bridge.service",
            "broker mqtt.lan refused the connection",
        )
        assert all(w["logger"].startswith("argentic_edge") for w in json.loads(body)["warnings"])


async def test_the_web_service_survives_a_failed_apply_from_its_own_request(tmp_path: Path) -> None:
    document = web_document(tmp_path)
    document["messaging"]["connect_timeout"] = 300  # type: ignore[index]
    base = f"http://127.0.0.1:{document['web']['port']}"  # type: ignore[index]
    async with (
        running_edge(tmp_path, document) as edge,
        aiohttp.ClientSession(headers=BEARER) as session,
    ):
        before = edge.config
        async with session.get(f"{base}/api/config") as response:
            submitted = (await response.json())["document"]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            submitted["messaging"]["port"] = taken.getsockname()[1]
            async with session.put(f"{base}/api/config", json=submitted) as response:
                assert response.status == 409
        async with session.get(f"{base}/healthz") as response:
            assert (response.status, await response.json()) == (200, {"ok": True, "reasons": []})
        assert edge.config is before
        assert set(edge.services) == {"bus", "agents", "web"}
