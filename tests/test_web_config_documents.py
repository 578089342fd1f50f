"""Odd documents sent to the editor: every one gets an answer (valid, or 422 naming the problem),
never HTTP 500, in plain and in add-on mode (where the Supervisor's options and broker are merged
in first). An empty ``bridge.mqtt:`` is a config error, not a bridge that waits forever."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from argentic_edge.config import ConfigError, parse_config
from argentic_edge.homeassistant.options import options_to_config
from argentic_edge.homeassistant.runtime import AddonPaths, AddonRuntime
from tests.support.brokers import free_port
from tests.support.config import TOKEN
from tests.support.web import running_edge, web_client, web_document

BEARER = {"Authorization": f"Bearer {TOKEN}"}
SECTIONS = (
    "node_name",
    "data_dir",
    "log_level",
    "messaging",
    "bridge",
    "discovery",
    "certificates",
    "web",
    "topics",
)
ODD_DOCUMENTS = [
    "bridge:\n  mqtt:\n",
    "bridge:\n  enabled: true\n  mqtt:\n",
    "".join(f"{section}:\n" for section in SECTIONS),
    *(f"{section}:\n" for section in SECTIONS),
    "bridge:\n  mqtt:\n    tls_params:\n    qos_levels:\n    retain_messages:\n",
    "discovery:\n  federation:\n",
    "bridge:\n  routes:\n  buffer:\n",
    *(f"{section}: [1, 2]\n" for section in SECTIONS),
    "bridge: {mqtt: [broker]}\n",
    "bridge: {routes: {topic: a}}\n",
    "bridge: {routes: [7, null]}\n",
    "bridge: {mqtt: {tls_params: [1]}}\n",
    "messaging: {protocol: [mqtt]}\n",
    "messaging: {protocol: mqtt, url: [a]}\n",
    "web: {port: {a: 1}}\n",
    "discovery: {federation: {trusted_peers: {a: 1}}}\n",
    "42\n",
    "just text\n",
    "- a\n- b\n",
    "null\n",
    "''\n",
    "true\n",
    "3.5\n",
    "[]\n",
    "1: 2\n",
    "null: x\n",
    "web: {null: 1, 7: 2}\n",
    "? [a, b]\n: c\n",
    "node_name: 2001-01-01\n",
    "web: {password: 2001-01-01}\n",
    "web: !!set {a, b}\n",
    "web: {port: .nan}\n",
    "!!binary aGk=\n",
    "bridge: !!omap [a: 1]\n",
    "messaging: {port: 99999999999999999999999}\n",
]


def addon_runtime(tmp_path: Path) -> AddonRuntime:
    """The add-on's composition: options from the Supervisor, and its MQTT service."""
    paths = AddonPaths(
        tmp_path / "options.json", tmp_path / "extra.yaml", tmp_path / "data", tmp_path / "healthz"
    )
    runtime = AddonRuntime(paths, supervisor=None)  # type: ignore[arg-type]  # compose only
    runtime.options_raw = options_to_config({"node_name": "addon-node"})
    runtime.mqtt_service = {
        "host": "127.0.0.1",
        "port": free_port(),
        "username": "addons",
        "password": "service-pw",
    }
    return runtime


@pytest.mark.parametrize("mode", ["plain", "addon"])
async def test_no_document_makes_the_editor_answer_500(tmp_path: Path, mode: str) -> None:
    async with (
        running_edge(tmp_path, web_document(tmp_path, web_options={"enabled": False})) as edge,
        web_client(edge) as client,
    ):
        if mode == "addon":
            edge.compose = addon_runtime(tmp_path).compose
        before = edge.config
        for text in ODD_DOCUMENTS:
            for path, method in (("/api/config/check", "POST"), ("/api/config", "PUT")):
                status, _, body = await client.request(
                    method,
                    path,
                    data=text.encode(),
                    headers={**BEARER, "Content-Type": "application/yaml"},
                )
                assert status in (200, 422), (text, path, status, body)
                if status == 200:
                    assert method == "POST", (text, "an odd document was applied")
                    break  # valid: not applied here, it would move the bus to default ports
                assert json.loads(body)["problems"], (text, body)
            try:
                document = yaml.safe_load(text)
                json.dumps(document)
            except (yaml.YAMLError, TypeError, ValueError):
                continue  # not representable as JSON
            if document is None:
                continue  # aiohttp sends no body for json=None
            status, _, body = await client.request(
                "POST", "/api/config/check", json=document, headers=BEARER
            )
            assert status in (200, 422), (text, "json", status, body)
        assert edge.config is before


@pytest.mark.parametrize("text", ["bridge:\n  mqtt:\n", "bridge: {enabled: true, mqtt: null}\n"])
def test_an_empty_bridge_mqtt_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_load(text), env={})
    [problem] = caught.value.problems
    assert problem.path == "bridge.mqtt" and problem.value is None
    assert "broker_address" in problem.expected and "bridge.enabled: false" in problem.expected


def test_an_empty_bridge_mqtt_is_refused_in_the_add_on_too(tmp_path: Path) -> None:
    runtime = addon_runtime(tmp_path)
    with pytest.raises(ConfigError) as caught:
        parse_config(runtime.compose(yaml.safe_load("bridge:\n  mqtt:\n")), env={})
    assert [p.path for p in caught.value.problems] == ["bridge.mqtt"]
    # Left out, the Supervisor's broker fills it in: that is how "no broker written" is said.
    config = parse_config(runtime.compose(yaml.safe_load("bridge:\n  enabled: true\n")), env={})
    assert config.bridge.mqtt.broker_address == "127.0.0.1"


@pytest.mark.parametrize("mode", ["plain", "addon"])
async def test_the_editor_never_answers_with_an_expanded_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("SUPERVISOR_TOKEN", "supervisor-token-77ab")
    monkeypatch.setenv("PLAIN_VAR", "plain-value-5e")
    text = (
        "bridge: {mqtt: {client_id: '${SUPERVISOR_TOKEN}'}}\n"
        "web: {port: '${SUPERVISOR_TOKEN}'}\n"
        "messaging: {port: '${PLAIN_VAR}', proxy_mode: '${PLAIN_VAR}'}\n"
    )
    async with (
        running_edge(tmp_path, web_document(tmp_path, web_options={"enabled": False})) as edge,
        web_client(edge) as client,
    ):
        if mode == "addon":
            edge.compose = addon_runtime(tmp_path).compose
        for method, path in (("POST", "/api/config/check"), ("PUT", "/api/config")):
            status, _, body = await client.request(
                method,
                path,
                data=text.encode(),
                headers={**BEARER, "Content-Type": "application/yaml"},
            )
            assert status == 422, body
            assert "supervisor-token-77ab" not in body and "plain-value-5e" not in body
            shown = {p["path"]: p["value"] for p in json.loads(body)["problems"]}
            assert shown["bridge.mqtt.client_id"] == "${SUPERVISOR_TOKEN}"
            assert shown["messaging.port"] == shown["messaging.proxy_mode"] == "${PLAIN_VAR}"
