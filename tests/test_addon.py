"""The Home Assistant add-on: its files pass the store's rules, its glue turns the Supervisor's
view (options, MQTT service) into the appliance's configuration, and it announces itself to
Home Assistant over a real broker."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiomqtt
import pytest
import yaml
from aiohttp import web

from argentic_edge.federation.identity import load_or_create_keys
from argentic_edge.homeassistant import entities
from argentic_edge.homeassistant import options as addon_options
from argentic_edge.homeassistant import supervisor as supervisor_api
from argentic_edge.storage import federation_dir
from tests.support.brokers import Mosquitto, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / "config.yaml").read_text())
RUN_SCRIPT = "rootfs/etc/s6-overlay/s6-rc.d/argentic-edge/run"


def _load_tool(name: str) -> ModuleType:
    """Import a script from addon/ (tooling, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"addon_{name}", ROOT / "addon" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


standin = _load_tool("supervisor_standin")
make_images = _load_tool("make_images")


# --- the add-on files --------------------------------------------------------------------------


def _run_lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "addon" / "lint.py"), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_passes_on_the_repository() -> None:
    result = _run_lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "add-on files: ok" in result.stdout


@pytest.fixture
def addon_copy(tmp_path: Path) -> Path:
    """The repository's files in a fresh git repository, modes kept, for breaking on purpose."""
    command = [
        "git",
        "-C",
        str(ROOT),
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
    ]
    listed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    copy = tmp_path / "repo"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    subprocess.run(["git", "-C", str(copy), "add", "-A"], check=True)
    return copy


def test_lint_reports_every_mistake(addon_copy: Path) -> None:
    config = (addon_copy / "config.yaml").read_text()
    config = config.replace(
        "init: false\n", "init: false\nboot: auto\nwatchdog: tcp://[HOST]:[PORT:8099]\n"
    )
    config = config.replace("  log_level: info\n", "  log_level: verbose\n")
    (addon_copy / "config.yaml").write_text(config)
    translations = (addon_copy / "translations" / "en.yaml").read_text()
    (addon_copy / "translations" / "en.yaml").write_text(
        re.sub(r"  keyfile:\n(    .*\n)+", "", translations)
    )
    docs = (addon_copy / "DOCS.md").read_text()
    (addon_copy / "DOCS.md").write_text(
        re.sub(r"### Option: `api_token`.*?(?=\n## )", "", docs, flags=re.S)
    )
    run = addon_copy / RUN_SCRIPT
    run.chmod(0o644)
    subprocess.run(
        ["git", "-C", str(addon_copy), "update-index", "--chmod=-x", RUN_SCRIPT], check=True
    )
    (addon_copy / "examples").mkdir()
    (addon_copy / "examples" / "config.yaml").write_text("a: 1\n")
    (addon_copy / "build.yaml").write_text("build_from: {}\n")

    result = _run_lint(addon_copy)

    assert result.returncode == 1
    report = result.stdout
    assert "config.yaml: boot: 'auto' is the default value" in report
    assert "config.yaml: watchdog: not used" in report
    assert "config.yaml: options.log_level: 'verbose' does not fit" in report
    assert "translations/en.yaml: configuration.keyfile.name: missing" in report
    assert "translations/en.yaml: configuration.keyfile.description: missing" in report
    assert "DOCS.md: no '### Option: `api_token`' section" in report
    assert f"{RUN_SCRIPT}: not executable in git" in report
    assert "examples/config.yaml: the Supervisor would read it as another add-on" in report
    assert "build.yaml: build files are deprecated" in report
    # Nothing else was broken, so nothing else is reported.
    assert len(report.strip().splitlines()) == 9, report


def test_lint_runs_the_linters_and_compares_versions(addon_copy: Path) -> None:
    pyproject = (addon_copy / "pyproject.toml").read_text()
    (addon_copy / "pyproject.toml").write_text(
        pyproject.replace('version = "0.1.0"', 'version = "0.2.0"', 1)
    )
    config = (addon_copy / "config.yaml").read_text()
    (addon_copy / "config.yaml").write_text(config.replace("  - amd64\n", "  - amd64\n  - armv7\n"))
    with (addon_copy / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("RUN cd /tmp && touch marker\n")
    with (addon_copy / "rootfs/etc/s6-overlay/s6-rc.d/argentic-edge/finish").open("a") as finish:
        finish.write("unused=$1\n")
    with (addon_copy / "repository.yaml").open("a") as repository:
        repository.write("extra:  1\n")

    report = _run_lint(addon_copy).stdout

    assert "config.yaml: version: '0.1.0' is not pyproject.toml's '0.2.0'" in report
    assert "Dockerfile: BUILD_VERSION default '0.1.0' is not pyproject.toml's '0.2.0'" in report
    assert "config.yaml: arch: armv7: no longer supported" in report
    assert "DL3003" in report  # hadolint: use WORKDIR instead of cd
    assert "SC2034" in report  # shellcheck: unused variable
    assert "repository.yaml:5:8: error: too many spaces after colon" in report


def test_images_are_reproducible(tmp_path: Path) -> None:
    assert make_images.main(["make_images.py", str(tmp_path)]) == 0
    for name in ("icon.png", "logo.png"):
        fresh = (tmp_path / name).read_bytes()
        assert fresh == (ROOT / name).read_bytes(), f"{name}: run addon/make_images.py"


# --- options -> configuration ------------------------------------------------------------------


def test_default_options_set_only_what_the_user_sees() -> None:
    config = addon_options.options_to_config(MANIFEST["options"])
    assert config == {
        "data_dir": "/data",
        "log_level": "info",
        "bridge": {"enabled": True, "ha_discovery": True},
        "discovery": {"enabled": True, "federation": {"trust": "approved"}},
        "web": {"ingress": True},
    }


def test_every_option_reaches_the_configuration() -> None:
    """config.yaml and options_to_config stay in step: each schema option changes the result."""
    samples: dict[str, Any] = {
        "str?": "value",
        "password?": "s3cret",
        "port?": 1884,
        "bool": None,
        "list(debug|info|warning|error)": "debug",
        "list(approved|open)": "open",
    }
    baseline = addon_options.options_to_config(MANIFEST["options"])
    for key, spec in MANIFEST["schema"].items():
        if key == "routes":
            value: Any = [{"topic": "home/#", "direction": "in"}]
        elif key == "trusted_peers":
            value = ["kitchen-pi"]
        elif spec == "bool":
            value = not MANIFEST["options"][key]
        else:
            value = samples[spec]
        changed = addon_options.options_to_config({**MANIFEST["options"], key: value})
        assert changed != baseline, f"option {key} has no effect"


def test_all_options_map_onto_the_configuration_format() -> None:
    options = {
        **MANIFEST["options"],
        "node_name": "kitchen-pi",
        "mqtt_host": "broker.lan",
        "mqtt_port": 8883,
        "mqtt_username": "edge",
        "mqtt_password": "s3cret",
        "mqtt_client_id": "edge-kitchen",
        "mqtt_tls": True,
        "mqtt_ca_certs": "mqtt/ca.pem",
        "routes": [
            {"topic": "agent/#", "direction": "both", "qos": "1", "retain": "false"},
            {
                "topic": "home/#",
                "direction": "in",
                "qos": "auto",
                "retain": "true",
                "remote_prefix": "house/",
            },
        ],
        "trusted_peers": ["garage-pi"],
        "certfile": "fullchain.pem",
        "keyfile": "/ssl/keys/privkey.pem",
        "web_password": "hunter2",
        "api_token": "token-1",
    }
    assert addon_options.options_to_config(options) == {
        "node_name": "kitchen-pi",
        "log_level": "info",
        "data_dir": "/data",
        "bridge": {
            "enabled": True,
            "ha_discovery": True,
            "mqtt": {
                "broker_address": "broker.lan",
                "port": 8883,
                "username": "edge",
                "password": "s3cret",
                "client_id": "edge-kitchen",
                "tls_params": {"ca_certs": "/ssl/mqtt/ca.pem", "cert_reqs": "CERT_REQUIRED"},
            },
            "routes": [
                {"topic": "agent/#", "direction": "both", "qos": 1, "retain": False},
                {
                    "topic": "home/#",
                    "direction": "in",
                    "qos": "auto",
                    "retain": True,
                    "remote_prefix": "house/",
                },
            ],
        },
        "discovery": {
            "enabled": True,
            "federation": {"trust": "approved", "trusted_peers": ["garage-pi"]},
        },
        "certificates": {"certfile": "/ssl/fullchain.pem", "keyfile": "/ssl/keys/privkey.pem"},
        "web": {"password": "hunter2", "api_token": "token-1", "ingress": True},
    }


def test_empty_and_null_options_leave_keys_out() -> None:
    config = addon_options.options_to_config(
        {"mqtt_host": "", "mqtt_port": None, "routes": [], "trusted_peers": []}
    )
    assert config == {"data_dir": "/data", "web": {"ingress": True}}


def test_a_ca_file_alone_turns_tls_on() -> None:
    config = addon_options.options_to_config({"mqtt_tls": False, "mqtt_ca_certs": "ca.pem"})
    assert config["bridge"]["mqtt"]["tls_params"] == {
        "ca_certs": "/ssl/ca.pem",
        "cert_reqs": "CERT_REQUIRED",
    }
    tls_only = addon_options.options_to_config({"mqtt_tls": True})
    assert tls_only["bridge"]["mqtt"]["tls_params"] == {"cert_reqs": "CERT_REQUIRED"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mqtt_hostname": "x", "colour": 1}, "unknown add-on option(s): colour, mqtt_hostname"),
        (
            {"routes": [{"topic": "a/#", "direction": "in", "retain": "maybe"}]},
            "routes[0].retain: expected true",
        ),
        (
            {"routes": [{"topic": "a/#", "direction": "in", "qos": "3"}]},
            "routes[0].qos: expected 0, 1, 2 or auto",
        ),
        (
            {"routes": [{"topic": "a/#", "direction": "in", "prefix": "x"}]},
            "routes[0]: unknown key(s) prefix",
        ),
        ({"routes": "agent/#"}, "routes: expected a list, got str"),
        ({"trusted_peers": ["ok", 5]}, "trusted_peers: expected node IDs or public keys"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(addon_options.AddonError) as caught:
        addon_options.options_to_config(options)
    assert message in str(caught.value)


def test_read_options(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(MANIFEST["options"]))
    assert addon_options.read_options(path) == MANIFEST["options"]
    path.write_text("{not json")
    with pytest.raises(
        addon_options.AddonError, match=re.escape("options.json is not readable JSON")
    ):
        addon_options.read_options(path)
    with pytest.raises(addon_options.AddonError, match="does not exist"):
        addon_options.read_options(tmp_path / "missing.json")


def test_ssl_paths() -> None:
    assert addon_options.ssl_path("fullchain.pem") == "/ssl/fullchain.pem"
    assert addon_options.ssl_path("certs/ca.pem") == "/ssl/certs/ca.pem"
    assert addon_options.ssl_path("/share/certs/ca.pem") == "/share/certs/ca.pem"


def test_options_win_and_the_yaml_file_adds() -> None:
    options = {
        "bridge": {"enabled": True, "mqtt": {"broker_address": "from-ui"}},
        "log_level": "info",
    }
    extra = {
        "bridge": {
            "mqtt": {"broker_address": "from-yaml", "keepalive": 30},
            "buffer": {"max_messages": 10},
        },
        "log_level": "debug",
        "messaging": {"high_water_mark": 5000},
    }
    before = json.dumps([options, extra], sort_keys=True)
    merged = addon_options.merge_config(options, extra)
    assert merged == {
        "bridge": {
            "enabled": True,
            "mqtt": {"broker_address": "from-ui", "keepalive": 30},
            "buffer": {"max_messages": 10},
        },
        "log_level": "info",
        "messaging": {"high_water_mark": 5000},
    }
    assert json.dumps([options, extra], sort_keys=True) == before
    assert addon_options.shadowed_keys(options, extra) == [
        "bridge.mqtt.broker_address",
        "log_level",
    ]


def test_lists_are_not_concatenated() -> None:
    options = {"bridge": {"routes": [{"topic": "a/#", "direction": "in"}]}}
    extra = {"bridge": {"routes": [{"topic": "b/#", "direction": "out"}]}}
    assert addon_options.merge_config(options, extra) == options
    assert addon_options.merge_config({}, extra) == extra


SERVICE = {
    "addon": "core_mosquitto",
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "supervisor-secret",
}


def test_the_users_broker_wins_over_the_service() -> None:
    config = {"bridge": {"mqtt": {"broker_address": "broker.lan", "port": 1884}}}
    assert addon_options.apply_supervisor_mqtt(config, SERVICE) == config


def test_the_service_fills_a_missing_broker() -> None:
    config = addon_options.options_to_config({"bridge_enabled": True})
    result = addon_options.apply_supervisor_mqtt(config, SERVICE)
    assert result["bridge"]["mqtt"] == {
        "broker_address": "core-mosquitto",
        "port": 1883,
        "username": "addons",
        "password": "supervisor-secret",
    }
    assert "mqtt" not in config["bridge"], "the input must not change"


def test_a_typed_login_is_kept_with_the_services_host() -> None:
    config = addon_options.options_to_config({"mqtt_username": "edge", "mqtt_password": "mine"})
    mqtt = addon_options.apply_supervisor_mqtt(config, {**SERVICE, "ssl": True, "port": "8883"})[
        "bridge"
    ]["mqtt"]
    assert mqtt == {
        "broker_address": "core-mosquitto",
        "port": 8883,
        "username": "edge",
        "password": "mine",
        "tls_params": {"cert_reqs": "CERT_REQUIRED"},
    }


# --- the Supervisor API ------------------------------------------------------------------------


@pytest.fixture
async def supervisor() -> AsyncIterator[tuple[Any, str]]:
    """The stand-in Supervisor on a free loopback port: (its state, its base URL)."""
    state = standin.SupervisorState(
        token="test-token", info=standin.default_info(ingress_port=43210)
    )
    runner = web.AppRunner(standin.create_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield state, f"http://{host}:{port}"
    await runner.cleanup()


async def test_the_token_is_required(supervisor: tuple[Any, str]) -> None:
    state, url = supervisor
    state.mqtt = SERVICE
    async with supervisor_api.SupervisorClient(url, token="wrong") as client:
        with pytest.raises(
            supervisor_api.SupervisorError, match="refused the add-on's token \\(HTTP 401\\)"
        ):
            await client.mqtt_service()
        with pytest.raises(supervisor_api.SupervisorError, match="HTTP 401"):
            await client.addon_info()
    assert state.rejected_requests == 2
    assert "wrong" not in repr(client)


async def test_an_undeclared_service_is_an_error_not_a_wait(supervisor: tuple[Any, str]) -> None:
    state, url = supervisor
    state.mqtt, state.mqtt_access = SERVICE, False
    async with supervisor_api.SupervisorClient(url, token="test-token") as client:
        with pytest.raises(
            supervisor_api.SupervisorError, match=r"HTTP 403.*No access to mqtt service.*mqtt:want"
        ):
            await client.wait_for_mqtt_service(initial_delay=0.01, timeout=5)


def test_no_token_outside_an_addon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    with pytest.raises(supervisor_api.SupervisorError, match="SUPERVISOR_TOKEN is not set"):
        supervisor_api.SupervisorClient()


async def test_the_environment_points_at_the_supervisor(
    supervisor: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _state, url = supervisor
    monkeypatch.setenv("SUPERVISOR_TOKEN", "test-token")
    monkeypatch.setenv("SUPERVISOR_API", url)
    async with supervisor_api.SupervisorClient() as client:
        info = await client.addon_info()
    assert info["ingress_port"] == 43210
    assert supervisor_api.network_ports(info) == {5555: 5555, 5556: 5556, 5557: 5557, 8099: None}


async def test_service_not_provided_is_none(supervisor: tuple[Any, str]) -> None:
    _state, url = supervisor
    async with supervisor_api.SupervisorClient(url, token="test-token") as client:
        assert await client.mqtt_service() is None


async def test_the_service_appears_after_retries(
    supervisor: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = supervisor
    state.mqtt, state.mqtt_unavailable_for = SERVICE, 3
    caplog.set_level(logging.DEBUG)
    async with supervisor_api.SupervisorClient(url, token="test-token") as client:
        service = await asyncio.wait_for(
            client.wait_for_mqtt_service(initial_delay=0.01, max_delay=0.04, timeout=10), timeout=10
        )
    assert service == SERVICE
    assert state.mqtt_requests == 4
    assert "Waiting for the Supervisor's MQTT service" in caplog.text
    assert "core-mosquitto:1883" in caplog.text
    assert "supervisor-secret" not in caplog.text
    assert "test-token" not in caplog.text


async def test_waiting_gives_up_at_the_timeout(supervisor: tuple[Any, str]) -> None:
    state, url = supervisor
    async with supervisor_api.SupervisorClient(url, token="test-token") as client:
        assert (
            await client.wait_for_mqtt_service(initial_delay=0.01, max_delay=0.05, timeout=0.3)
            is None
        )
    assert state.mqtt_requests >= 3


async def test_waiting_is_cancellable(supervisor: tuple[Any, str]) -> None:
    state, url = supervisor
    async with supervisor_api.SupervisorClient(url, token="test-token") as client:
        task = asyncio.create_task(client.wait_for_mqtt_service(initial_delay=60, max_delay=60))
        await asyncio.wait_for(state.mqtt_requested.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=2)


async def test_an_unreachable_supervisor_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with supervisor_api.SupervisorClient(
        f"http://127.0.0.1:{free_port()}", token="test-token"
    ) as client:
        with pytest.raises(
            supervisor_api.SupervisorUnavailable, match="/services/mqtt unreachable"
        ):
            await client.mqtt_service()
        assert (
            await client.wait_for_mqtt_service(initial_delay=0.01, max_delay=0.02, timeout=0.2)
            is None
        )
    assert caplog.text.count("Waiting for the Supervisor's MQTT service") >= 2


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    delays = supervisor_api.backoff_delays(1.0, 8.0, 0.2)
    values = [next(delays) for _ in range(6)]
    for value, nominal in zip(values, (1, 2, 4, 8, 8, 8), strict=True):
        assert nominal * 0.8 <= value <= nominal * 1.2


def test_the_standin_runs_as_a_program(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "addon" / "supervisor_standin.py"),
            "--port",
            str(port),
            "--token",
            "t",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            "1999",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)

        async def ask() -> dict[str, Any] | None:
            async with supervisor_api.SupervisorClient(
                f"http://127.0.0.1:{port}", token="t"
            ) as client:
                return await client.mqtt_service()

        service = asyncio.run(ask())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert service is not None and service["host"] == "127.0.0.1" and service["port"] == 1999


# --- Home Assistant MQTT discovery -------------------------------------------------------------

NODE_ID = "0123456789abcdef0123456789abcdef"
STATUS_TOPIC = "argentic/edge/kitchen-pi/status"
STATE_TOPIC = f"argentic/edge/{NODE_ID}/state"


def test_discovery_describes_one_device() -> None:
    messages = entities.discovery_messages(
        NODE_ID, "Kitchen Pi", "0.1.0", STATUS_TOPIC, configuration_url="https://pi:8099/"
    )
    assert len(messages) == len(entities.STATE_KEYS) + 1 == 6  # the sensors and the button
    payloads = [json.loads(payload) for _topic, payload, _retain in messages]
    assert all(retain for _topic, _payload, retain in messages)
    assert {json.dumps(p["device"], sort_keys=True) for p in payloads} == {
        json.dumps(
            {
                "identifiers": [f"argentic_edge_{NODE_ID}"],
                "name": "Kitchen Pi",
                "configuration_url": "https://pi:8099/",
                "manufacturer": "Argentic",
                "model": "argentic-edge",
                "sw_version": "0.1.0",
            },
            sort_keys=True,
        )
    }
    assert len({p["unique_id"] for p in payloads}) == len(payloads)
    state = json.loads(
        entities.state_payload(
            bus_rate=12.34,
            bridge_connected=True,
            peers_linked=2,
            agents_seen=3,
            cert_days_left=None,
        )
    )
    button = payloads.pop()
    assert button["command_topic"] == f"argentic/edge/{NODE_ID}/command"
    assert button["default_entity_id"] == "button.argentic_edge_01234567_reconnect_uplinks"
    for (topic, _payload, _retain), payload in zip(messages, payloads, strict=False):
        component = topic.split("/")[1]
        assert re.fullmatch(rf"homeassistant/{component}/{NODE_ID}/[a-z_]+/config", topic)
        assert component in ("sensor", "binary_sensor")
        assert payload["default_entity_id"].startswith(f"{component}.argentic_edge_01234567_")
        assert payload["availability_topic"] == STATUS_TOPIC
        assert (payload["payload_available"], payload["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert payload["state_topic"] == STATE_TOPIC
        key = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", payload["value_template"]).group(1)
        assert key in state
    binary = next(p for p in payloads if p["unique_id"].endswith("bridge_connected"))
    assert (
        binary["device_class"] == "connectivity"
        and state["bridge_connected"] == binary["payload_on"]
    )
    assert set(state) == {*entities.STATE_KEYS, "uplinks"}


def test_each_uplink_has_a_connectivity_sensor_keyed_by_its_name() -> None:
    messages = entities.discovery_messages(
        NODE_ID, "pi", "0.1.0", STATUS_TOPIC, uplinks=["Cloud-1"]
    )
    topic, payload, _retain = next(m for m in messages if "/uplink_" in m[0])
    sensor = json.loads(payload)
    assert topic == f"homeassistant/binary_sensor/{NODE_ID}/uplink_Cloud-1/config"
    assert sensor["default_entity_id"] == "binary_sensor.argentic_edge_01234567_uplink_cloud_1"
    assert sensor["unique_id"] == f"argentic_edge_{NODE_ID}_uplink_Cloud-1"
    state = json.loads(
        entities.state_payload(
            bus_rate=0, bridge_connected=False, peers_linked=0, agents_seen=0,
            cert_days_left=None, uplinks={"Cloud-1": True},
        )
    )  # fmt: skip
    assert state["uplinks"] == {"Cloud-1": "ON"}
    gone = entities.uplink_removal_messages(NODE_ID, ["Cloud-1"])
    assert gone == [(topic, b"", True)]


def test_discovery_node_ids_are_topic_safe() -> None:
    topics = [topic for topic, _p, _r in entities.removal_messages("kitchen pi.local", prefix="ha")]
    assert topics.pop() == "argentic/edge/kitchen_pi_local/state"
    assert all(topic.startswith("ha/") and "/kitchen_pi_local/" in topic for topic in topics)


async def test_discovery_and_removal_through_a_real_broker(
    mosquitto: Mosquitto, tmp_path: Path, repo_env: dict[str, str]
) -> None:
    """What Home Assistant sees: retained configs after announcing, nothing after
    ``argentic-edge ha-remove`` (the appliance itself need not run): the device under the
    stable id and what an older version left under the name."""
    node_id = load_or_create_keys(federation_dir(tmp_path / "data")).node_id
    old = [topic for topic, _p, _r in entities.legacy_removal_messages("kitchen-pi")[:-1]]
    messages = [
        *entities.discovery_messages(
            node_id, "kitchen-pi", "0.1.0", STATUS_TOPIC, uplinks=["mqtt"]
        ),
        *[(topic, b'{"name": "old"}', True) for topic in old],
    ]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="edge") as client:
        for topic, payload, retain in messages:
            await client.publish(topic, payload, qos=1, retain=retain)
    announced = {topic: payload for topic, payload, _retain in messages}
    assert await _retained(mosquitto.port, len(messages)) == announced

    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node_name": "kitchen-pi",
                "data_dir": str(tmp_path / "data"),
                "bridge": {"mqtt": {"broker_address": "127.0.0.1", "port": mosquitto.port}},
            }
        )
    )
    removal = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "argentic_edge",
        "ha-remove",
        "--config",
        str(config),
        env=repo_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(removal.communicate(), 30)
    assert removal.returncode == 0, err.decode()
    assert out.decode() == "removed from Home Assistant: 14 retained topics cleared\n"
    assert await _retained(mosquitto.port, 0) == {}


async def test_ha_remove_names_an_unreachable_broker(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump({"bridge": {"mqtt": {"broker_address": "127.0.0.1", "port": free_port()}}})
    )
    removal = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "argentic_edge",
        "ha-remove",
        "--config",
        str(config),
        env=repo_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(removal.communicate(), 30)
    assert removal.returncode == 1
    assert "127.0.0.1" in err.decode() and "Traceback" not in err.decode()


async def _retained(port: int, expected: int) -> dict[str, bytes]:
    """The retained messages under homeassistant/#, read by a new subscriber (as HA at start).

    A marker published after subscribing arrives after every retained message, so the read
    ends on an event rather than on a guess at how long the broker takes."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="home-assistant") as client:
        await client.subscribe("homeassistant/#", qos=1)
        await client.subscribe("test/marker", qos=1)
        await client.publish("test/marker", b"end", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                if str(message.topic) == "test/marker":
                    break
                found[str(message.topic)] = bytes(message.payload)
    assert len(found) == expected
    return found


# --- host details ------------------------------------------------------------------------------


def test_healthz_url_for_the_dockerfile(tmp_path: Path) -> None:
    path = supervisor_api.write_healthz_url(41234, tmp_path / "run" / "healthz-url")
    assert path.read_text() == "http://127.0.0.1:41234/healthz\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert f"$(cat {supervisor_api.HEALTHZ_URL_PATH})" in (ROOT / "Dockerfile").read_text()


def test_run_script_starts_the_app_in_addon_mode() -> None:
    script = (ROOT / RUN_SCRIPT).read_text()
    assert script.startswith("#!/command/with-contenv bashio\n")
    assert script.strip().splitlines()[-1] == "exec python3 -m argentic_edge run --addon"


@pytest.fixture(autouse=True)
def _no_stray_supervisor_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests choose the Supervisor URL themselves; a developer's shell must not leak in."""
    monkeypatch.delenv("SUPERVISOR_API", raising=False)
    yield
