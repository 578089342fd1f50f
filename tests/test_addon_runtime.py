"""The add-on as the Supervisor runs it: the `run` script's command against a stand-in Supervisor.

Everything but the Supervisor's HTTP API is real: the appliance process, a Mosquitto that only
accepts the credentials the Supervisor hands out, the ingress listener, MQTT discovery.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
import yaml
from aiohttp import web

from argentic_edge import __version__
from tests.support.bridge import wait_until
from tests.support.brokers import Mosquitto, free_port, mqtt_publish, wait_for_port
from tests.support.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "addon"))
from supervisor_standin import SupervisorState, create_app, default_info

TOKEN = "supervisor-token"
API_TOKEN = "scripts-token-for-the-api"
RUN_SCRIPT = REPO_ROOT / "rootfs/etc/s6-overlay/s6-rc.d/argentic-edge/run"


def run_script_command() -> list[str]:
    """The command the s6 `run` script execs, so the test runs what the add-on runs."""
    line = next(line for line in RUN_SCRIPT.read_text().splitlines() if line.startswith("exec "))
    argv = line.split()[1:]
    assert argv[:3] == ["python3", "-m", "argentic_edge"], line
    return [sys.executable, *argv[1:]]


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[tuple[SupervisorState, str]]:
    state = SupervisorState(token=TOKEN, info=default_info(ingress_port=free_port()))
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def retained(port: int, topic_filter: str, count: int, timeout: float = 20) -> dict[str, bytes]:
    """What the broker keeps under a filter (user 'reader', allowed by the broker's ACL)."""
    found: dict[str, bytes] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-reader")
    client.username_pw_set("reader", "reader-pass")
    client.on_connect = lambda c, *_: c.subscribe(topic_filter)

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.payload:  # an empty payload clears a topic (live, while we listen)
            found[message.topic] = message.payload
        else:
            found.pop(message.topic, None)

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return found


async def healthz_url(run: Path, timeout: float = 10) -> str:
    """The HEALTHCHECK's URL file. It is written once the web listener is up, so it may trail
    the port by a moment."""
    path = run / "healthz-url"
    await wait_until(path.exists, timeout, "the HEALTHCHECK URL file")
    return path.read_text()


async def test_zero_typing_add_on_with_the_supervisors_broker(
    tmp_path: Path, supervisor: tuple[SupervisorState, str]
) -> None:
    state, api = supervisor
    passwords = tmp_path / "passwords"
    passwords.touch()
    for user, password in (("addons", "from-the-supervisor"), ("reader", "reader-pass")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
    broker = Mosquitto(
        tmp_path / "mosquitto", extra_conf=[f"password_file {passwords}", "allow_anonymous false"]
    ).start()
    state.mqtt = {
        "host": "127.0.0.1",
        "port": broker.port,
        "ssl": False,
        "username": "addons",
        "password": "from-the-supervisor",
        "protocol": "3.1.1",
    }
    state.mqtt_unavailable_for = 2  # Mosquitto "still booting": the add-on must not wait for it

    data, config, run = tmp_path / "data", tmp_path / "config", tmp_path / "run"
    for folder in (data, config, run):
        folder.mkdir()
    (data / "options.json").write_text(
        json.dumps(
            {
                "log_level": "info",
                "bridge_enabled": True,
                "ha_discovery": True,
                "discovery_enabled": False,
                "api_token": API_TOKEN,
                "node_name": "ha-edge",
            }
        )
    )
    bus_port, backend_port = free_port(), free_port()
    (config / "argentic-edge.yaml").write_text(
        yaml.safe_dump(
            {  # the advanced file adds keys
                "messaging": {
                    "broker_address": "127.0.0.1",
                    "port": bus_port,
                    "backend_port": backend_port,
                },
                "bridge": {"mqtt": {"connect_retry_delay": 0.2}},
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "SUPERVISOR_TOKEN": TOKEN,
        "SUPERVISOR_API": api,
        "ARGENTIC_EDGE_ADDON_DATA": str(data),
        "ARGENTIC_EDGE_ADDON_CONFIG": str(config),
        "ARGENTIC_EDGE_ADDON_RUN": str(run),
    }
    appliance = await asyncio.create_subprocess_exec(
        *run_script_command(), env=env, stderr=asyncio.subprocess.PIPE
    )
    ingress = state.info["ingress_port"]
    try:
        await asyncio.to_thread(wait_for_port, ingress, "127.0.0.1", 20)
        assert await healthz_url(run) == f"http://127.0.0.1:{ingress}/healthz\n"

        configs = await asyncio.to_thread(retained, broker.port, "homeassistant/#", 7)
        assert len(configs) == 7, f"discovery configs on the broker: {configs}"
        devices = [json.loads(payload)["device"] for payload in configs.values()]
        assert {device["name"] for device in devices} == {"ha-edge"}
        assert {device["configuration_url"] for device in devices} == {
            "homeassistant://hassio/ingress/local_argentic_edge"  # the add-on's ingress panel
        }
        assert state.mqtt_requests >= 3, "the broker was adopted after the service appeared"

        base = f"http://127.0.0.1:{ingress}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as answer:
                assert answer.status == 200, await answer.text()
            async with session.get(f"{base}/") as answer:
                assert answer.status == 403, "ingress answers only the Supervisor's address"
            async with session.get(
                f"{base}/api/status", headers={"Authorization": f"Bearer {API_TOKEN}"}
            ) as answer:
                status = await answer.json()
        assert status["bridge"]["state"] == "connected"
        assert status["bridge"]["broker"].endswith(f":{broker.port}")
        assert status["node"]["addon"] is True
        assert status["bus"]["publish"].endswith(f":{bus_port}")

        # Before uninstalling: the page's "Remove from Home Assistant" (the API) ...
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/api/homeassistant/remove", headers={"Authorization": f"Bearer {API_TOKEN}"}
            ) as answer:
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["removed"] == 14  # by id (8) and by name (6)
            async with session.get(
                f"{base}/api/status", headers={"Authorization": f"Bearer {API_TOKEN}"}
            ) as answer:
                status = await answer.json()
        assert status["homeassistant"]["withdrawn"] is True
        assert await asyncio.to_thread(retained, broker.port, "homeassistant/#", 1, 1.0) == {}

        # ... or `ha-remove --addon`, with the Supervisor's broker (stale configs put back here)
        await asyncio.to_thread(
            mqtt_publish, broker.port, configs, credentials=("reader", "reader-pass")
        )
        removal = await asyncio.create_subprocess_exec(
            *run_script_command()[:3],
            "ha-remove",
            "--addon",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(removal.communicate(), 30)
        assert removal.returncode == 0, err.decode()
        assert "14 retained topics cleared" in out.decode()
        assert await asyncio.to_thread(retained, broker.port, "homeassistant/#", 1, 1.0) == {}
    finally:
        appliance.terminate()
        _, stderr = await asyncio.wait_for(appliance.communicate(), 15)
        broker.stop()
    log = stderr.decode()
    assert appliance.returncode == 0, log
    assert "from-the-supervisor" not in log and API_TOKEN not in log and TOKEN not in log
    assert re.search(r"MQTT service from the Supervisor: 127\.0\.0\.1:\d+", log)


def dockerfile_install(dockerfile: Path, image_root: Path) -> list[str]:
    """Copy what the Dockerfile copies before its ``pip install`` into ``image_root`` and
    return that RUN command (continuation lines joined) with paths moved under it: the image's
    install step, as written. The wheels stage's directory stays empty here: pip takes the
    aiokafka wheel for this machine from the index instead (``--only-binary`` still holds)."""
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and words[-1].startswith("/tmp/src"):
            target = image_root / words[-1].lstrip("/")
            for source in words[1:-1]:
                origin = REPO_ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        if words[:3] == ["RUN", "pip", "install"]:
            command = line.removeprefix("RUN ")
            for path in ("/tmp/src", "/tmp/wheels"):
                command = command.replace(path, str(image_root / path.lstrip("/")))
            return command
    raise AssertionError("the Dockerfile has no RUN pip install line")


async def test_the_image_install_step_gives_a_working_add_on(
    tmp_path: Path, supervisor: tuple[SupervisorState, str]
) -> None:
    """The Dockerfile's install command in a fresh virtualenv (no Docker engine here), then the
    s6 `run` script's command from it, outside the checkout: the package is complete."""
    state, api = supervisor
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = dockerfile_install(REPO_ROOT / "Dockerfile", tmp_path / "image")
    bin_dir = venv / "bin"
    install = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    assert not (tmp_path / "image/tmp/src").exists(), "the sources are removed after installing"
    where = subprocess.run(
        [str(bin_dir / "python3"), "-c", "import argentic_edge; print(argentic_edge.__file__)"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(venv)), f"imported from {where}, not the installed package"

    data, config, run = tmp_path / "data", tmp_path / "config", tmp_path / "run"
    for folder in (data, config, run):
        folder.mkdir()
    (data / "options.json").write_text(json.dumps({"discovery_enabled": False}))
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
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        {
            "SUPERVISOR_TOKEN": TOKEN,
            "SUPERVISOR_API": api,
            "ARGENTIC_EDGE_ADDON_DATA": str(data),
            "ARGENTIC_EDGE_ADDON_CONFIG": str(config),
            "ARGENTIC_EDGE_ADDON_RUN": str(run),
        }
    )
    appliance = await asyncio.create_subprocess_exec(
        str(bin_dir / "python3"),
        *run_script_command()[1:],
        env=env,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_for_port, state.info["ingress_port"], "127.0.0.1", 30)
        url = (await healthz_url(run)).strip()
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            health = await answer.json()
        assert answer.status == 200, health
    finally:
        appliance.terminate()
        _, stderr = await asyncio.wait_for(appliance.communicate(), 15)
    log = stderr.decode()
    assert appliance.returncode == 0, log
    assert f"argentic-edge {__version__} is up" in log
