"""The configuration: the guide's examples, Argentic's own config files, and bad input."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from argentic_edge.config import (
    MASK,
    ConfigError,
    EdgeConfig,
    Secret,
    dump_yaml,
    file_problems,
    load_config,
    parse_config,
    to_dict,
)
from tests.support.config import REPO_ROOT

EXAMPLES = REPO_ROOT.parent / "shared" / "seed" / "examples"
EXAMPLE_ENV = {
    "MQTT_BROKER_ADDRESS": "mqtt.production.com",
    "MQTT_USERNAME": "argentic_user",
    "MQTT_PASSWORD": "secure_password",
    "MQTT_CLIENT_ID": "argentic-prod-001",
    "MQTT_CA_CERT": "/etc/ssl/certs/ca.crt",
    "MQTT_CLIENT_CERT": "/etc/ssl/certs/client.crt",
    "MQTT_CLIENT_KEY": "/etc/ssl/private/client.key",
}


def example(name: str) -> EdgeConfig:
    return load_config(EXAMPLES / name, env=EXAMPLE_ENV)


def test_every_example_of_the_guide_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) == 14, "the seed has one file per YAML example of the guide"
    for file in files:
        assert isinstance(load_config(file, env=EXAMPLE_ENV), EdgeConfig), file.name


def test_no_file_is_the_embedded_defaults() -> None:
    config = load_config(None, env={})
    bus = config.messaging
    assert (bus.port, bus.backend_port, bus.start_proxy, bus.proxy_mode) == (
        5555,
        5556,
        True,
        "embedded",
    )
    assert bus.high_water_mark == 1000 and bus.topic_encoding == "utf-8"
    assert config.bridge.mqtt.broker_address is None
    assert config.node_name and config.data_dir
    assert [route.topic for route in config.bridge.routes] == [
        "agent/#",
        "tools/#",
        "supervisor/#",
        "_ping/#",
        "logs/#",
    ]
    assert config.bridge.routes[-1].direction == "out"


def test_zeromq_examples_configure_the_bus() -> None:
    embedded = example("zeromq-embedded.yaml").messaging
    assert (embedded.broker_address, embedded.port, embedded.backend_port) == (
        "127.0.0.1",
        5555,
        5556,
    )
    assert embedded.start_proxy and embedded.proxy_mode == "embedded"
    external = example("zeromq-external.yaml").messaging
    assert external.broker_address == "192.168.1.100"
    assert not external.start_proxy and external.proxy_mode == "external"
    advanced = example("zeromq-advanced.yaml").messaging
    assert (
        advanced.high_water_mark,
        advanced.linger,
        advanced.connect_timeout,
        advanced.topic_encoding,
    ) == (1000, 1000, 5000, "utf-8")


def test_mqtt_examples_configure_the_uplink() -> None:
    basic = example("mqtt-basic.yaml")
    mqtt = basic.bridge.mqtt
    assert (mqtt.broker_address, mqtt.port, mqtt.client_id, mqtt.keepalive) == (
        "localhost",
        1883,
        "argentic-agent",
        60,
    )
    assert basic.messaging.protocol == "zeromq", "the local bus keeps its defaults"
    auth = example("mqtt-auth.yaml").bridge.mqtt
    assert auth.username == "your_username" and auth.password == Secret("your_password")
    tls = example("mqtt-tls.yaml").bridge.mqtt.tls_params
    assert tls is not None
    assert (tls.ca_certs, tls.certfile, tls.keyfile) == (
        "/path/to/ca-certificate.crt",
        "/path/to/client-certificate.crt",
        "/path/to/client-private-key.key",
    )
    assert (tls.cert_reqs, tls.tls_version, tls.ciphers) == (
        "CERT_REQUIRED",
        "PROTOCOL_TLS",
        "HIGH:!aNULL:!MD5",
    )
    cloud = example("cloud-mqtt.yaml").bridge.mqtt
    assert cloud.port == 8883 and cloud.keepalive == 300
    assert cloud.tls_params is not None and cloud.tls_params.tls_version == "PROTOCOL_TLSv1_2"
    ha = example("high-availability.yaml").bridge.mqtt
    assert (ha.connect_retry_delay, ha.max_reconnect_attempts) == (5.0, 10)
    assert example("local-development.yaml").bridge.mqtt.client_id == "argentic-dev"
    assert example("docker-compose.yaml").bridge.mqtt.broker_address == "mosquitto"


def test_qos_retention_and_session_examples() -> None:
    qos = example("qos.yaml").bridge.mqtt.qos_levels
    assert (qos.tool_calls, qos.responses, qos.status, qos.logs) == (1, 1, 0, 0)
    retain = example("retention.yaml").bridge.mqtt.retain_messages
    assert (retain.status, retain.tool_registry, retain.responses) == (True, True, False)
    session = example("clean-session.yaml").bridge.mqtt
    assert session.clean_session is False and session.client_id == "argentic-persistent-agent"


def test_environment_variables_example() -> None:
    mqtt = example("env-vars.yaml").bridge.mqtt
    assert mqtt.broker_address == "mqtt.production.com"
    assert mqtt.username == "argentic_user" and mqtt.password == Secret("secure_password")
    assert mqtt.client_id == "argentic-prod-001"
    assert mqtt.tls_params is not None and mqtt.tls_params.keyfile == "/etc/ssl/private/client.key"


def test_missing_variable_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLES / "env-vars.yaml", env={})
    paths = {problem.path for problem in caught.value.problems}
    assert "messaging.broker_address" in paths and "messaging.tls_params.keyfile" in paths
    assert "MQTT_CLIENT_KEY is not set" in str(caught.value)


def test_default_values_in_substitutions() -> None:
    raw = {
        "messaging": {
            "port": "${BUS_PORT:-6000}",
            "backend_port": "${BACK:-6001}",
            "start_proxy": "${START:-false}",
        }
    }
    bus = parse_config(raw, env={"BACK": "7001"}).messaging
    assert (bus.port, bus.backend_port, bus.start_proxy) == (6000, 7001, False)


def test_a_whole_argentic_config_is_accepted() -> None:
    raw = yaml.safe_load("""
llm: {provider: ollama, ollama_model_name: gemma3:12b-it-qat}
agent: {system_prompt: hello}
messaging:
  protocol: mqtt
  url: localhost
  port: 1883
  user: me
  password: pw
  client_id: ai_agent_client
  tool_client_id: ai_tool_client
  keepalive: 60
topics:
  commands: {ask_question: agent/command/ask_question}
  responses: {answer: agent/response/answer}
""")
    config = parse_config(raw, env={})
    assert config.bridge.mqtt.broker_address == "localhost"
    assert config.bridge.mqtt.username == "me"
    assert config.topics["commands"]["ask_question"] == "agent/command/ask_question"


def test_argentic_zeromq_agent_block_is_the_bus() -> None:
    raw = {
        "messaging": {
            "protocol": "zeromq",
            "url": "127.0.0.1",
            "port": 5555,
            "backend_port": 5556,
            "client_id": "agent-1",
            "start_proxy": False,
            "proxy_mode": "external",
        }
    }
    bus = parse_config(raw, env={}).messaging
    assert bus.broker_address == "127.0.0.1" and bus.proxy_mode == "external"


def test_every_problem_is_reported_at_once_with_key_value_and_expectation() -> None:
    raw = {
        "messaging": {
            "port": 70000,
            "backend_port": "x",
            "proxy_mode": "sidecar",
            "hight_water_mark": 5,
            "topic_encoding": "klingon",
        },
        "bridge": {
            "mqtt": {"qos_levels": {"status": 3}, "tls_params": {"cert_reqs": "MAYBE"}},
            "routes": [{"topic": "a/#/b"}, {"topic": "ok/#", "direction": "sideways"}],
        },
        "web": {"port": 0},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    problems = {problem.path: problem for problem in caught.value.problems}
    assert set(problems) == {
        "messaging.port",
        "messaging.backend_port",
        "messaging.proxy_mode",
        "messaging.hight_water_mark",
        "messaging.topic_encoding",
        "bridge.mqtt.qos_levels.status",
        "bridge.mqtt.tls_params.cert_reqs",
        "bridge.routes[0].topic",
        "bridge.routes[1].direction",
        "web.port",
    }
    assert problems["messaging.port"].value == 70000
    assert "1 to 65535" in problems["messaging.port"].expected
    assert "did you mean 'high_water_mark'" in problems["messaging.hight_water_mark"].expected
    assert "embedded | external" in problems["messaging.proxy_mode"].expected


def test_a_near_miss_top_level_section_is_reported() -> None:
    with pytest.raises(ConfigError, match="did you mean 'bridge'"):
        parse_config({"bridg": {"enabled": False}}, env={})


def test_protocols_we_do_not_bridge_are_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("messaging.protocol")):
        parse_config({"messaging": {"protocol": "kafka"}}, env={})


def test_conflicting_ports_are_refused() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        parse_config({"messaging": {"port": 6000, "backend_port": 6000}}, env={})


def test_secrets_are_masked_in_repr_dump_and_errors() -> None:
    config = parse_config(
        {"bridge": {"mqtt": {"password": "hunter2"}}, "web": {"api_token": "tok-123"}}, env={}
    )
    assert "hunter2" not in repr(config) and "tok-123" not in repr(config)
    dumped = dump_yaml(config)
    assert "hunter2" not in dumped and "tok-123" not in dumped and MASK in dumped
    assert to_dict(config, reveal=True)["bridge"]["mqtt"]["password"] == "hunter2"
    with pytest.raises(ConfigError) as caught:
        parse_config({"bridge": {"mqtt": {"password": ["hunter2"]}}}, env={})
    assert "hunter2" not in str(caught.value)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("messaging:\n  port: [5555\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*line 3"):
        load_config(bad)


def test_referenced_files_are_checked_only_by_check_config() -> None:
    config = example("mqtt-tls.yaml")
    problems = {problem.path: problem.value for problem in file_problems(config)}
    assert problems == {
        "bridge.mqtt.tls_params.ca_certs": "/path/to/ca-certificate.crt",
        "bridge.mqtt.tls_params.certfile": "/path/to/client-certificate.crt",
        "bridge.mqtt.tls_params.keyfile": "/path/to/client-private-key.key",
    }


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "argentic_edge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_config_exit_codes(tmp_path: Path, repo_env: dict[str, str]) -> None:
    good = run_cli("check-config", str(EXAMPLES / "mqtt-auth.yaml"), env=repo_env)
    assert good.returncode == 0, good.stderr
    printed = yaml.safe_load(good.stdout)
    assert printed["bridge"]["mqtt"]["username"] == "your_username"
    assert printed["bridge"]["mqtt"]["password"] == MASK
    assert "your_password" not in good.stdout + good.stderr

    tls = run_cli("check-config", str(EXAMPLES / "mqtt-tls.yaml"), env=repo_env)
    assert tls.returncode == 1
    assert "bridge.mqtt.tls_params.ca_certs: '/path/to/ca-certificate.crt'" in tls.stderr
    assert "Traceback" not in tls.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("messaging:\n  port: 0\n  linger: soon\n")
    failed = run_cli("check-config", str(bad), env=repo_env)
    assert failed.returncode == 1
    assert "messaging.port: 0" in failed.stderr and "messaging.linger: 'soon'" in failed.stderr

    usage = run_cli("check-config", env=repo_env)
    assert usage.returncode == 2


def test_a_problem_without_a_value_reads_without_none(tmp_path: Path) -> None:
    """A file that does not parse has no value to show: "None —" read as noise."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("web: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(broken, env={})
    text = str(caught.value)
    assert "None" not in text and "is not valid YAML" in text, text
    with pytest.raises(ConfigError) as caught:
        parse_config({"web": {"port": 0}}, env={})
    assert "web.port: 0 — expected a TCP port" in str(caught.value)


# --- uplinks ---------------------------------------------------------------------------------


def test_bridge_and_an_mqtt_messaging_block_are_the_uplink_named_mqtt() -> None:
    for name in ("mqtt-basic.yaml", "mqtt-auth.yaml", "cloud-mqtt.yaml", "qos.yaml"):
        config = example(name)
        (uplink,) = config.uplinks
        assert (uplink.name, uplink.protocol, uplink.source) == ("mqtt", "mqtt", "bridge")
        assert uplink.routes == config.bridge.routes and uplink.buffer == config.bridge.buffer
        mqtt = config.bridge.mqtt
        assert uplink.link == dataclasses.replace(mqtt, client_id=None), name
    assert [u.name for u in load_config(None, env={}).uplinks] == ["mqtt"]  # waits for a broker
    assert parse_config({"bridge": {"enabled": False}}, env={}).uplinks == ()


def test_an_agents_client_id_is_not_the_appliances() -> None:
    config = example("mqtt-basic.yaml")
    assert config.bridge.mqtt.client_id == "argentic-agent"  # what the guide's file says
    (uplink,) = config.uplinks
    assert (
        uplink.link.client_id is None
        and config.mqtt_client_id == f"argentic-edge-{config.node_name}"
    )
    assert "'argentic-agent' is the agent's own client id" in uplink.notes[0]
    assert dump_yaml(config).startswith("# note: uplink 'mqtt': messaging.client_id")
    own = parse_config({"bridge": {"mqtt": {"client_id": "edge-1", "broker_address": "h"}}}, env={})
    assert own.mqtt_client_id == "edge-1" and own.uplinks[0].notes == ()


def test_an_uplinks_list_is_read_entry_by_entry() -> None:
    config = parse_config(
        {
            "uplinks": [
                {
                    "name": "ha",
                    "protocol": "mqtt",
                    "broker_address": "core-mosquitto",
                    "user": "edge",
                    "password": "pw",
                    "routes": [{"topic": "agent/#", "direction": "out"}],
                    "buffer": {"max_messages": 50, "max_age": 60, "durable": False},
                },
                {"protocol": "mqtt", "broker_address": "dc.example.com", "port": 8883},
            ]
        },
        env={},
    )
    ha, second = config.uplinks  # no bridge: given, so no waiting mqtt uplink beside them
    assert (ha.name, ha.link.broker_address, ha.link.username, ha.source) == (
        "ha",
        "core-mosquitto",
        "edge",
        "uplinks[0]",
    )
    assert ha.link.password == Secret("pw") and ha.routes[0].direction == "out"
    assert (ha.buffer.max_messages, ha.buffer.max_age, ha.buffer.durable) == (50, 60.0, False)
    assert second.name == "mqtt" and second.routes == config.bridge.routes  # the defaults
    assert second.buffer.durable is True and config.first_mqtt_uplink is ha
    assert config.mqtt_client_id == f"argentic-edge-{config.node_name}-ha"
    printed = yaml.safe_load(dump_yaml(config))["uplinks"]
    assert printed[0]["password"] == MASK and printed[0]["broker_address"] == "core-mosquitto"
    assert printed[1]["name"] == "mqtt" and "link" not in printed[1]


def test_uplink_mistakes_name_the_key() -> None:
    def problems(document: dict[str, object]) -> str:
        with pytest.raises(ConfigError) as caught:
            parse_config(document, env={})
        return str(caught.value)

    two = [{"protocol": "mqtt", "name": "x"}, {"protocol": "mqtt", "name": "x"}]
    assert "uplinks[1].name: 'x' — the name is taken by uplinks[0]" in problems({"uplinks": two})
    beside = {"uplinks": [{"protocol": "mqtt"}], "bridge": {"mqtt": {"broker_address": "h"}}}
    assert "uplinks[0].name: 'mqtt' — the name is taken by the uplink bridge:" in problems(beside)
    unknown = problems({"uplinks": [{"protocol": "mqtt5"}]})
    assert "uplinks[0].protocol: 'mqtt5' — unknown protocol; expected one of: mqtt" in unknown
    assert "uplinks[0].protocol: expected one of" in problems({"uplinks": [{"name": "a"}]})
    assert "uplinks: 'ha' — expected a list" in problems({"uplinks": "ha"})
    typo = problems({"uplinks": [{"protocol": "mqtt", "brokr_address": "h", "port": 0}]})
    assert "uplinks[0].brokr_address" in typo and "did you mean 'broker_address'" in typo
    assert "uplinks[0].port: 0 — expected a TCP port" in typo
    route = problems(
        {"uplinks": [{"protocol": "mqtt", "routes": [{"topic": "#", "local_prefix": "x"}]}]}
    )
    assert "uplinks[0].routes[0].local_prefix: 'x'" in route


def test_two_uplinks_on_one_broker_must_not_carry_a_topic_round() -> None:
    def uplinks(*routes: list[dict[str, str]]) -> dict[str, object]:
        return {
            "uplinks": [
                {"name": f"u{i}", "protocol": "mqtt", "broker_address": "h", "routes": r}
                for i, r in enumerate(routes)
            ]
        }

    with pytest.raises(ConfigError) as caught:
        parse_config(uplinks([{"topic": "agent/#", "direction": "in"}], [{"topic": "#"}]), env={})
    (problem,) = caught.value.problems
    assert problem.path == "uplinks[1].routes[0]" and problem.value == "#"
    assert (
        "uplinks[0].routes[0] brings in" in problem.expected and "mqtt://h:1883" in problem.expected
    )
    # One way only, disjoint topics, prefixes that keep the two apart, or another broker: fine.
    parse_config(
        uplinks([{"topic": "a/#", "direction": "out"}], [{"topic": "a/#", "direction": "out"}]),
        env={},
    )
    parse_config(uplinks([{"topic": "a/#"}], [{"topic": "b/#"}]), env={})
    parse_config(
        uplinks(
            [{"topic": "#", "remote_prefix": "one/"}], [{"topic": "#", "remote_prefix": "two/"}]
        ),
        env={},
    )
    other = uplinks([{"topic": "#"}], [{"topic": "#"}])
    other["uplinks"][1]["broker_address"] = "elsewhere"  # type: ignore[index]
    assert len(parse_config(other, env={}).uplinks) == 2


def test_check_config_prints_the_effective_uplinks(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    printed = run_cli("check-config", str(EXAMPLES / "mqtt-basic.yaml"), env=repo_env)
    assert printed.returncode == 0, printed.stderr
    assert "# note: uplink 'mqtt': messaging.client_id 'argentic-agent'" in printed.stdout
    (uplink,) = yaml.safe_load(printed.stdout)["uplinks"]
    assert (uplink["name"], uplink["protocol"], uplink["broker_address"]) == (
        "mqtt",
        "mqtt",
        "localhost",
    )
    assert uplink["client_id"] is None and uplink["routes"][0]["topic"] == "agent/#"
