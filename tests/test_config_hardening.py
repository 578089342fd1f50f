"""Configuration that a careless or hostile writer gives: refused by check-config with the key, the
value as written and what was expected, instead of crashing ``run`` or leaking the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from argentic_edge.bus.proxy import apply_socket_options
from argentic_edge.config import (
    MAX_DOCUMENT_BYTES,
    BusConfig,
    ConfigError,
    Problem,
    parse_config,
    read_yaml,
)
from argentic_edge.web.configedit import load_text

INT_MAX = 2**31 - 1
SUPERVISOR_TOKEN = "supervisor-token-8c1f0e"


def problems(raw: object, env: dict[str, str] | None = None) -> dict[str, Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={} if env is None else env)  # type: ignore[arg-type]
    return {problem.path: problem for problem in caught.value.problems}


def test_an_unlimited_high_water_mark_is_refused() -> None:
    found = problems({"messaging": {"high_water_mark": 0}})
    assert list(found) == ["messaging.high_water_mark"]
    assert "unlimited" in found["messaging.high_water_mark"].expected


def test_max_message_size_is_on_by_default_and_bounded() -> None:
    assert parse_config({}, env={}).messaging.max_message_size == 1024 * 1024
    assert (
        parse_config({"messaging": {"max_message_size": 4096}}, env={}).messaging.max_message_size
        == 4096
    )
    assert set(problems({"messaging": {"max_message_size": 0}})) == {"messaging.max_message_size"}


@pytest.mark.parametrize("key", ["high_water_mark", "connect_timeout", "max_message_size"])
def test_libzmq_int_options_are_bounded_to_what_libzmq_takes(key: str) -> None:
    found = problems({"messaging": {key: INT_MAX + 1}})
    assert list(found) == [f"messaging.{key}"]
    assert found[f"messaging.{key}"].value == INT_MAX + 1
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
    assert "utf-8" in found["messaging.topic_encoding"].expected


def test_text_codecs_that_keep_ascii_are_accepted() -> None:
    for codec in ("utf-8", "UTF8", "latin-1", "ascii", "cp1252"):
        assert isinstance(
            parse_config({"messaging": {"topic_encoding": codec}}, env={}).messaging, BusConfig
        )


# --- environment variables -----------------------------------------------------------------


def test_problems_show_the_value_as_written_not_the_expanded_one() -> None:
    env = {
        "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN,
        "HOST_PORT": "not-a-port",
        "MODE": "sideways",
        "PFX": "a b/",
    }
    found = problems(
        {
            "node_name": "${SUPERVISOR_TOKEN}",
            "messaging": {"port": "${HOST_PORT}", "proxy_mode": "${MODE}"},
            "bridge": {"routes": [{"topic": "x/#", "remote_prefix": "${PFX}"}]},
            "web": {"port": "${SUPERVISOR_TOKEN}"},
        },
        env,
    )
    shown = " ".join(f"{p}" for p in found.values())
    assert SUPERVISOR_TOKEN not in shown and "not-a-port" not in shown
    assert "sideways" not in shown and "a b/" not in shown
    assert found["messaging.port"].value == "${HOST_PORT}"
    assert found["messaging.proxy_mode"].value == "${MODE}"
    assert found["bridge.routes[0].remote_prefix"].value == "${PFX}"


@pytest.mark.parametrize(
    "name", ["SUPERVISOR_TOKEN", "HASSIO_TOKEN", "MQTT_PASSWORD", "APP_SECRET", "OPENAI_API_KEY"]
)
def test_secret_variables_are_expanded_only_into_secret_fields(name: str) -> None:
    env = {name: "s3cr3t-value"}
    found = problems({"bridge": {"mqtt": {"username": f"${{{name}}}"}}}, env)
    assert list(found) == ["bridge.mqtt.username"]
    problem = found["bridge.mqtt.username"]
    assert name in problem.expected and "secret field" in problem.expected
    assert "s3cr3t-value" not in str(problem)
    config = parse_config(
        {"bridge": {"mqtt": {"password": f"${{{name}}}"}}, "web": {"api_token": f"${{{name}}}"}},
        env,
    )
    assert config.web.api_token is not None and config.web.api_token.reveal() == "s3cr3t-value"


def test_check_config_never_prints_an_expanded_value(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    file = tmp_path / "leak.yaml"
    file.write_text("node_name: ${SUPERVISOR_TOKEN}\nmessaging:\n  port: ${LEAKY}\n")
    result = subprocess.run(
        [sys.executable, "-m", "argentic_edge", "check-config", str(file)],
        env={**repo_env, "SUPERVISOR_TOKEN": SUPERVISOR_TOKEN, "LEAKY": "leaky-value"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "node_name: '${SUPERVISOR_TOKEN}'" in result.stderr
    assert "messaging.port: '${LEAKY}'" in result.stderr
    assert SUPERVISOR_TOKEN not in result.stdout + result.stderr
    assert "leaky-value" not in result.stdout + result.stderr


# --- the YAML itself -----------------------------------------------------------------------

LAUGHS = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
        for previous, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
    )
    + "discovery: {interfaces: *i}\n"
)


def check_config(file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "argentic_edge", "check-config", str(file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(90)
def test_a_billion_laughs_document_is_refused_by_check_config(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    assert len(LAUGHS.encode()) < 1024  # 9**9 values once the aliases are expanded
    file = tmp_path / "laughs.yaml"
    file.write_text(LAUGHS)
    result = check_config(file, repo_env)
    assert result.returncode == 1, result.stderr
    assert "aliases" in result.stderr and "Traceback" not in result.stderr


def test_a_billion_laughs_document_is_refused_by_the_loaders(tmp_path: Path) -> None:
    file = tmp_path / "laughs.yaml"
    file.write_text(LAUGHS)
    for load in (lambda: read_yaml(file), lambda: load_text(LAUGHS)):
        with pytest.raises(ConfigError, match="aliases"):
            load()


def test_a_document_above_the_size_bound_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "big.yaml"
    file.write_text("# padding\n" * (MAX_DOCUMENT_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="at most 1048576 bytes"):
        read_yaml(file)
    with pytest.raises(ConfigError, match="at most 1048576 bytes"):
        load_text(file.read_text())


def test_an_alias_inside_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match="contains itself"):
        load_text("topics: &t {again: *t}\n")


def test_duplicate_keys_are_errors_naming_each_key_path(tmp_path: Path) -> None:
    text = (
        "web:\n  port: 8100\n  port: 8101\nbridge:\n  routes:\n    - {topic: a/#, topic: b/#}\n"
        "web:\n  host: 127.0.0.1\n"
    )
    file = tmp_path / "twice.yaml"
    file.write_text(text)
    for load in (lambda: read_yaml(file), lambda: load_text(text)):
        with pytest.raises(ConfigError) as caught:
            load()
        found = {problem.path: problem for problem in caught.value.problems}
        assert set(found) == {"web.port", "bridge.routes[0].topic", "web"}
        assert "lines 2 and 3" in found["web.port"].expected
    # A merge key's values are defaults the mapping may override: not duplicates.
    merged = load_text("base: &b {port: 8100, host: 127.0.0.1}\nweb:\n  <<: *b\n  port: 8101\n")
    assert merged["web"] == {"port": 8101, "host": "127.0.0.1"}


@pytest.mark.parametrize("data_dir", ["../data", "/var/lib/../../etc", "data/..", "a/../b"])
def test_a_data_dir_with_parent_components_is_refused(data_dir: str) -> None:
    found = problems({"data_dir": data_dir})
    assert list(found) == ["data_dir"] and found["data_dir"].value == data_dir
    assert "'..'" in found["data_dir"].expected


def test_a_data_dir_with_dots_in_names_is_fine() -> None:
    assert (
        parse_config({"data_dir": "/srv/edge..v2/./data"}, env={}).data_dir
        == "/srv/edge..v2/./data"
    )


@pytest.mark.parametrize(
    "document",
    [
        {"messaging": {"topic_encoding": "utf\x008"}},
        {"bridge": {"mqtt": {"broker_address": "broker", "tls_params": {"ciphers": "HIGH\x00"}}}},
        {"node_name": "kitchen\x00pi"},
    ],
)
def test_a_nul_character_in_any_text_is_a_problem_not_a_crash(document: dict) -> None:
    """codecs.lookup and set_ciphers raise ValueError on NUL; the builder names the key instead."""
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert "expected text without NUL characters" in str(caught.value)
