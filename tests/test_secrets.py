"""Secrets never show: not in logs (at DEBUG), pages, API answers, MQTT messages, crash output,
``check-config`` or the add-on's log and sensors.

The appliance runs as users run it, with a broker password the broker refuses, a web password,
an API token and a brought-your-own TLS key, and is driven through the paths where a secret
could slip out. Everything it says is kept and searched for each secret in the forms it could
take on the way out: as written, JSON- or repr-escaped, URL-encoded, base64 (alone or as the
``user:password`` of HTTP basic auth), and for the key, each line of its PEM body.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import paho.mqtt.client as paho
import pytest
import requests
import yaml

from argentic_edge.config import parse_config
from tests.support.appliance import Process, command, environment
from tests.support.brokers import Mosquitto, free_port, wait_for_port
from tests.support.config import REPO_ROOT as ROOT
from tests.support.config import write_yaml
from tests.support.pki import Pki
from tests.support.web import running_edge, web_document

WEB_PASSWORD = "web-pw Zq7/+&é"
API_TOKEN = "api-tok-Lm3+/=Qx"
MQTT_PASSWORD = "mqtt-pw Kx9/+&é"
NEW_MQTT_PASSWORD = "typed-in-editor Pf4/+&é"
SUPERVISOR_TOKEN = "sup-token-Wq2Zr"
SUPERVISOR_MQTT_PASSWORD = "from-supervisor Rv5/+&é"
USER = "edge"


def forms(secret: str) -> set[str]:
    """The ways ``secret`` could appear in text that leaves the appliance."""
    found = {
        secret,
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        quote(secret),
        quote_plus(secret),
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"{USER}:{secret}".encode()).decode(),
        base64.b64encode(f"addons:{secret}".encode()).decode(),
    }
    return {form for form in found if len(form) >= 8}


def assert_clean(where: str, text: str, secrets: Iterator[str] | list[str]) -> None:
    for secret in secrets:
        for form in forms(secret) if "\n" not in secret else {secret}:
            assert form not in text, f"a secret ({form!r}) leaked into {where}:\n{text[-3000:]}"


# --- the brought-your-own certificate ----------------------------------------------------------


def own_certificate(folder: Path) -> tuple[Pki, list[str]]:
    """A server certificate for 127.0.0.1 from a CA of the test's own; its key's PEM body lines."""
    pki = Pki.create(folder)
    body = [
        line
        for line in pki.server_key.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    return pki, body


# --- a broker that refuses the bridge's password ------------------------------------------------


@pytest.fixture
def strict_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "broker-passwords"
    passwords.touch()
    for user, password in (
        (USER, "not-what-the-edge-has"),
        ("addons", SUPERVISOR_MQTT_PASSWORD),
        ("reader", "reader-pass"),
    ):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
    broker = Mosquitto(
        tmp_path / "mosquitto", extra_conf=[f"password_file {passwords}", "allow_anonymous false"]
    ).start()
    yield broker
    broker.stop()


def broker_traffic(port: int, period: float = 1.0) -> str:
    """Everything on the broker (retained and live) for ``period`` seconds, as text."""
    seen: list[str] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.username_pw_set("reader", "reader-pass")
    client.on_connect = lambda c, *_: c.subscribe("#")
    client.on_message = lambda _c, _u, m: seen.append(f"{m.topic} {m.payload!r}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(period)  # no event marks "everything retained has arrived": a fixed window
    client.loop_stop()
    client.disconnect()
    return "\n".join(seen)


# --- the appliance driven through every path -----------------------------------------------------


def _document(
    tmp_path: Path, broker: Mosquitto, certfile: Path, keyfile: Path, web_port: int
) -> dict[str, Any]:
    return {
        "node_name": "secrets-test",
        "data_dir": str(tmp_path / "data"),
        "log_level": "debug",
        "messaging": {
            "broker_address": "127.0.0.1",
            "port": free_port(),
            "backend_port": free_port(),
        },
        "bridge": {
            "enabled": True,
            "mqtt": {
                "broker_address": "127.0.0.1",
                "port": broker.port,
                "username": USER,
                "password": MQTT_PASSWORD,
                "connect_retry_delay": 0.2,
            },
        },
        "discovery": {"enabled": False},
        "certificates": {"enabled": True, "certfile": str(certfile), "keyfile": str(keyfile)},
        "web": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": web_port,
            "password": WEB_PASSWORD,
            "api_token": API_TOKEN,
        },
    }


def _until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_secrets_stay_out_of_every_output(tmp_path: Path, strict_broker: Mosquitto) -> None:
    pki, key_body = own_certificate(tmp_path / "ssl")
    certfile, keyfile, ca = pki.server_cert, pki.server_key, pki.ca
    secrets = [WEB_PASSWORD, API_TOKEN, MQTT_PASSWORD, NEW_MQTT_PASSWORD, *key_body]
    web_port = free_port()
    document = _document(tmp_path, strict_broker, certfile, keyfile, web_port)
    config = write_yaml(tmp_path / "edge.yaml", document)
    said: list[tuple[str, str]] = []  # (where, text)
    base = f"https://127.0.0.1:{web_port}"
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}

    def get(path: str, **kwargs: Any) -> requests.Response:
        answer = requests.get(base + path, verify=str(ca), timeout=10, **kwargs)
        said.append((f"GET {path}", f"{answer.headers}\n{answer.text}"))
        return answer

    with Process(
        tmp_path / "run", ("--log-level", "debug", "run", "--config", str(config))
    ) as appliance:
        appliance.wait_for_output("is up as node")
        # The broker refuses the bridge's password: the failure is logged and shown.
        status = _until(
            lambda: (s := get("/api/status", headers=bearer).json())["bridge"]["last_error"] and s,
            20,
            "the broker to refuse the bridge",
        )
        assert status["bridge"]["state"] != "connected"
        for path in ("/api/config", "/metrics", "/api/openapi.json"):
            assert get(path, headers=bearer).status_code == 200, path
        assert get("/healthz").status_code == 503  # the bridge is down, and says why
        # The pages, as a browser that logged in with the password sees them.
        session = requests.Session()
        login = session.post(
            f"{base}/login",
            data={"password": WEB_PASSWORD},
            verify=str(ca),
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 303
        said.append(("the login answer", f"{login.headers}\n{login.text}"))
        for page in ("/", "/config"):
            answer = session.get(base + page, verify=str(ca), timeout=10)
            assert answer.status_code == 200
            said.append((f"page {page}", answer.text))
        # Config changes: a bad value next to a new password, a secret of the wrong type, and a
        # good change sent back with the masks the editor showed.
        shown = get("/api/config", headers=bearer).json()["document"]
        bad = json.loads(json.dumps(shown))
        bad["bridge"]["mqtt"].update(password=NEW_MQTT_PASSWORD, port="not-a-port")
        wrong_type = json.loads(json.dumps(shown))
        wrong_type["web"]["password"] = [NEW_MQTT_PASSWORD]
        good = json.loads(json.dumps(shown))
        good["node_name"] = "secrets-test-2"
        for body, expected in ((bad, 422), (wrong_type, 422), (good, 200)):
            answer = requests.put(
                f"{base}/api/config", json=body, headers=bearer, verify=str(ca), timeout=30
            )
            said.append(("PUT /api/config", f"{answer.headers}\n{answer.text}"))
            assert answer.status_code == expected, answer.text
        yaml_wrong = yaml.safe_dump(
            {**shown, "web": {**shown["web"], "api_token": {"t": NEW_MQTT_PASSWORD}}},
            allow_unicode=True,
        )
        answer = requests.post(
            f"{base}/api/config/check",
            data=yaml_wrong.encode(),
            headers={**bearer, "Content-Type": "application/yaml"},
            verify=str(ca),
            timeout=10,
        )
        said.append(("POST /api/config/check", answer.text))
        assert answer.status_code == 422
        appliance.wait_for_output("configuration applied")
        said.append(("the broker", broker_traffic(strict_broker.port, 0.5)))
    said.append(("the appliance's output", appliance.output()))
    assert appliance.process is not None and appliance.process.returncode == 0, appliance.output()
    stored = config.read_text()
    assert MQTT_PASSWORD in stored and NEW_MQTT_PASSWORD not in stored  # kept, not replaced

    # check-config, valid and not.
    for path, doc in (
        (config, None),
        (
            tmp_path / "bad.yaml",
            {
                **document,
                "web": {**document["web"], "password": [WEB_PASSWORD]},
                "bridge": {"mqtt": {"password": MQTT_PASSWORD, "port": 0}},
            },
        ),
    ):
        if doc is not None:
            write_yaml(path, doc)
        result = subprocess.run(
            command("check-config", str(path)),
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=environment(),
        )
        said.append((f"check-config {path.name}", result.stdout + result.stderr))
        assert result.returncode == (0 if doc is None else 1), result.stderr

    # Crashes: a taken port, and a damaged key file (half of the real key).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        crash = write_yaml(
            tmp_path / "taken.yaml", {**document, "web": {**document["web"], "port": port}}
        )
        result = subprocess.run(
            command("--log-level", "debug", "run", "--config", str(crash)),
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=environment(),
        )
    said.append(("a taken port", result.stdout + result.stderr))
    assert result.returncode == 1 and "already in use" in result.stderr, result.stderr
    damaged = tmp_path / "ssl" / "damaged.key"
    damaged.write_text("\n".join(keyfile.read_text().splitlines()[:3]) + "\n")
    damaged.chmod(0o600)
    crash = write_yaml(
        tmp_path / "damaged.yaml",
        {**document, "certificates": {**document["certificates"], "keyfile": str(damaged)}},
    )
    # The page is never served without TLS when certificates are on: the run stops, naming
    # the file.
    result = subprocess.run(
        command("--log-level", "debug", "run", "--config", str(crash)),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=environment(),
    )
    said.append(("a damaged key", result.stdout + result.stderr))
    assert result.returncode == 1, result.stderr
    assert f"{damaged}: not a PEM private key" in result.stderr.splitlines()[-1], result.stderr

    for where, text in said:
        assert "Traceback" not in text, (where, text[-3000:])
        assert_clean(where, text, secrets)


def test_the_add_on_keeps_the_supervisors_secrets(tmp_path: Path, strict_broker: Mosquitto) -> None:
    """``run --addon`` at DEBUG, the broker credentials from a stand-in Supervisor: neither they
    nor the Supervisor's token show in the add-on's log, its API or its Home Assistant sensors."""
    ingress, api_port = free_port(), free_port()
    supervisor = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "addon" / "supervisor_standin.py"),
            "--port",
            str(api_port),
            "--token",
            SUPERVISOR_TOKEN,
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(strict_broker.port),
            "--mqtt-username",
            "addons",
            "--mqtt-password",
            SUPERVISOR_MQTT_PASSWORD,
            "--ingress-port",
            str(ingress),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(api_port)
        data, config, run = tmp_path / "data", tmp_path / "config", tmp_path / "run"
        for folder in (data, config, run):
            folder.mkdir()
        (data / "options.json").write_text(
            json.dumps(
                {
                    "log_level": "debug",
                    "bridge_enabled": True,
                    "ha_discovery": True,
                    "discovery_enabled": False,
                    "api_token": API_TOKEN,
                    "node_name": "ha-secrets",
                }
            )
        )
        (config / "argentic-edge.yaml").write_text(
            yaml.safe_dump(
                {
                    "messaging": {
                        "broker_address": "127.0.0.1",
                        "port": free_port(),
                        "backend_port": free_port(),
                    }
                }
            )
        )
        env = {
            "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN,
            "SUPERVISOR_API": f"http://127.0.0.1:{api_port}",
            "ARGENTIC_EDGE_ADDON_DATA": str(data),
            "ARGENTIC_EDGE_ADDON_CONFIG": str(config),
            "ARGENTIC_EDGE_ADDON_RUN": str(run),
        }
        said: list[tuple[str, str]] = []
        with Process(
            tmp_path / "out", ("--log-level", "debug", "run", "--addon"), env=env
        ) as appliance:
            wait_for_port(ingress)
            bearer = {"Authorization": f"Bearer {API_TOKEN}"}
            status = _until(
                lambda: (
                    (
                        s := requests.get(
                            f"http://127.0.0.1:{ingress}/api/status", headers=bearer, timeout=10
                        ).json()
                    )["bridge"]["state"]
                    == "connected"
                    and s
                ),
                20,
                "the bridge to connect",
            )
            said.append(("/api/status", json.dumps(status)))
            for path in ("/api/config", "/metrics"):
                answer = requests.get(
                    f"http://127.0.0.1:{ingress}{path}", headers=bearer, timeout=10
                )
                said.append((path, answer.text))
            said.append(("Home Assistant's sensors", broker_traffic(strict_broker.port)))
        said.append(("the add-on's log", appliance.output()))
        assert "homeassistant/" in said[-2][1], "the sensors were published"
        for where, text in said:
            assert_clean(where, text, [SUPERVISOR_MQTT_PASSWORD, SUPERVISOR_TOKEN, API_TOKEN])
    finally:
        supervisor.terminate()
        supervisor.wait(10)


async def test_a_broken_key_never_turns_the_page_into_plain_http(tmp_path: Path) -> None:
    """With certificates on, the page is HTTPS or nothing: a change to a damaged key is
    refused and rolled back, and the page keeps its HTTPS (the password never goes in clear)."""
    document = web_document(tmp_path, certificates={"enabled": True})
    async with running_edge(tmp_path, document) as edge:
        assert edge.services["web"].status().https is True
        damaged = tmp_path / "damaged.key"
        damaged.write_text("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n")
        damaged.chmod(0o600)
        broken = parse_config(
            {
                **document,
                "certificates": {
                    "enabled": True,
                    "keyfile": str(damaged),
                    "certfile": str(tmp_path / "data" / "certs" / "server.pem"),
                },
            },
            env={},
        )
        previous = edge.config
        with pytest.raises(Exception, match="the web needs HTTPS"):
            await edge.apply(broken)
        assert edge.config == previous
        assert edge.services["web"].status().https is True
