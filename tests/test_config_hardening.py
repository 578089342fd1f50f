"""Configuration that a careless or hostile writer gives: refused by check-config with the key, the
value as written and what was expected, instead of crashing ``run`` or leaking the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from argentic_edge.config import BusConfig, ConfigError, parse_config
from argentic_edge.proxy import apply_socket_options

INT_MAX = 2**31 - 1
SUPERVISOR_TOKEN = "supervisor-token-8c1f0e"


def problems(raw: object, env: dict[str, str] | None = None) -> dict[str, object]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={} if env is None else env)  # type: ignore[arg-type]
    return {problem.path: problem for problem in caught.value.problems}


def test_an_unlimited_high_water_mark_is_refused() -> None:
    found = problems({"messaging": {"high_water_mark": 0}})
    assert list(found) == ["messaging.high_water_mark"]
    assert "unlimited" in found["messaging.high_water_mark"].expected  # type: ignore[attr-defined]


def test_max_message_size_is_on_by_default_and_bounded() -> None:
    assert parse_config({}, env={}).messaging.max_message_size == 1024 * 1024
    assert parse_config({"messaging": {"max_message_size": 4096}}, env={}
                        ).messaging.max_message_size == 4096
    assert set(problems({"messaging": {"max_message_size": 0}})) == {"messaging.max_message_size"}


@pytest.mark.parametrize("key", ["high_water_mark", "connect_timeout", "max_message_size"])
def test_libzmq_int_options_are_bounded_to_what_libzmq_takes(key: str) -> None:
    found = problems({"messaging": {key: INT_MAX + 1}})
    assert list(found) == [f"messaging.{key}"]
    assert found[f"messaging.{key}"].value == INT_MAX + 1  # type: ignore[attr-defined]
    # The largest accepted value really is one libzmq takes: the bound is not too tight.
    config = parse_config({"messaging": {key: INT_MAX}}, env={}).messaging
    context = zmq.Context()
    try:
        socket = context.socket(zmq.XPUB)
        apply_socket_options(socket, config)
        socket.close(linger=0)
    finally:
        context.term()


@pytest.mark.parametrize("codec", ["base64", "rot13", "utf-16", "hex", "cp500", "zlib"])
def test_topic_encoding_must_be_a_text_codec_that_keeps_ascii(codec: str) -> None:
    found = problems({"messaging": {"topic_encoding": codec}})
    assert list(found) == ["messaging.topic_encoding"]
    assert "utf-8" in found["messaging.topic_encoding"].expected  # type: ignore[attr-defined]


def test_text_codecs_that_keep_ascii_are_accepted() -> None:
    for codec in ("utf-8", "UTF8", "latin-1", "ascii", "cp1252"):
        assert isinstance(parse_config({"messaging": {"topic_encoding": codec}}, env={}
                                       ).messaging, BusConfig)


# --- environment variables -----------------------------------------------------------------

def test_problems_show_the_value_as_written_not_the_expanded_one() -> None:
    env = {"SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "HOST_PORT": "not-a-port",
           "MODE": "sideways", "PFX": "a b/"}
    found = problems({"node_name": "${SUPERVISOR_TOKEN}",
                      "messaging": {"port": "${HOST_PORT}", "proxy_mode": "${MODE}"},
                      "bridge": {"routes": [{"topic": "x/#", "remote_prefix": "${PFX}"}]},
                      "web": {"port": "${SUPERVISOR_TOKEN}"}}, env)
    shown = " ".join(f"{p}" for p in found.values())
    assert SUPERVISOR_TOKEN not in shown and "not-a-port" not in shown
    assert "sideways" not in shown and "a b/" not in shown
    assert found["messaging.port"].value == "${HOST_PORT}"  # type: ignore[attr-defined]
    assert found["messaging.proxy_mode"].value == "${MODE}"  # type: ignore[attr-defined]
    assert found["bridge.routes[0].remote_prefix"].value == "${PFX}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["SUPERVISOR_TOKEN", "HASSIO_TOKEN", "MQTT_PASSWORD",
                                  "APP_SECRET", "OPENAI_API_KEY"])
def test_secret_variables_are_expanded_only_into_secret_fields(name: str) -> None:
    env = {name: "s3cr3t-value"}
    found = problems({"bridge": {"mqtt": {"username": f"${{{name}}}"}}}, env)
    assert list(found) == ["bridge.mqtt.username"]
    problem = found["bridge.mqtt.username"]
    assert name in problem.expected and "secret field" in problem.expected  # type: ignore[attr-defined]
    assert "s3cr3t-value" not in str(problem)
    config = parse_config({"bridge": {"mqtt": {"password": f"${{{name}}}"}},
                           "web": {"api_token": f"${{{name}}}"}}, env)
    assert config.web.api_token is not None and config.web.api_token.reveal() == "s3cr3t-value"


def test_check_config_never_prints_an_expanded_value(tmp_path: Path,
                                                     repo_env: dict[str, str]) -> None:
    file = tmp_path / "leak.yaml"
    file.write_text("node_name: ${SUPERVISOR_TOKEN}\nmessaging:\n  port: ${LEAKY}\n")
    result = subprocess.run(
        [sys.executable, "-m", "argentic_edge", "check-config", str(file)],
        env={**repo_env, "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "LEAKY": "leaky-value"},
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "node_name: '${SUPERVISOR_TOKEN}'" in result.stderr
    assert "messaging.port: '${LEAKY}'" in result.stderr
    assert SUPERVISOR_TOKEN not in result.stdout + result.stderr
    assert "leaky-value" not in result.stdout + result.stderr
