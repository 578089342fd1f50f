"""The command line as a user meets it: real processes, real signals, real sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from argentic_edge.cli.main import build_parser
from argentic_edge.cli.pubsub import format_message
from argentic_edge.storage import saved_config_path
from bench.__main__ import OPT_IN, SUITES
from tests.support.brokers import wait_for_port
from tests.support.config import config_document, write_yaml
from tests.support.netns import Lan, netns_unavailable


def write_config(tmp_path: Path, **sections: object) -> tuple[Path, dict]:
    raw = config_document(tmp_path / "data", **sections)
    return write_yaml(tmp_path / "edge.yaml", raw), raw


def cli(
    *args: str, env: dict[str, str], timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "argentic_edge", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "argentic_edge", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def appliance(tmp_path: Path, repo_env: dict[str, str]) -> Iterator[tuple[Path, dict]]:
    path, raw = write_config(tmp_path)
    process = spawn("run", "--config", str(path), env=repo_env)
    wait_for_port(raw["messaging"]["port"])
    wait_for_port(raw["messaging"]["backend_port"])
    yield path, raw
    process.terminate()
    process.communicate(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_logs_where_it_listens_and_stops_within_two_seconds(
    tmp_path: Path, repo_env: dict[str, str], sig: signal.Signals
) -> None:
    path, raw = write_config(tmp_path)
    process = spawn("run", "--config", str(path), env=repo_env)
    wait_for_port(raw["messaging"]["backend_port"])
    time.sleep(0.3)  # still up a moment later, not crashed after binding
    assert process.poll() is None
    started = time.monotonic()
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=10)
    assert time.monotonic() - started < 2
    assert process.returncode == 0, stderr
    port, backend = raw["messaging"]["port"], raw["messaging"]["backend_port"]
    assert f"publishers connect to tcp://127.0.0.1:{port}" in stderr
    assert f"subscribers to tcp://127.0.0.1:{backend}" in stderr
    assert "Traceback" not in stderr
    assert f"configuration: {path.resolve()}" in stderr, "run says which file it loaded"


@pytest.mark.netns
def test_run_with_defaults_and_no_file(tmp_path: Path, repo_env: dict[str, str]) -> None:
    """The README's first command, nothing configured: the bus on 5555/5556 and every default
    service on. In a network namespace of its own, so its mDNS never reaches the real LAN and
    no port on this machine is in the way."""
    unavailable = netns_unavailable()
    if unavailable is not None:
        pytest.skip(unavailable)
    lan = Lan().create()
    try:
        namespace = lan.add()
        env = {**repo_env, "ARGENTIC_EDGE_DATA_DIR": str(tmp_path / "data")}
        process = namespace.popen(
            [sys.executable, "-m", "argentic_edge", "run"], env=env, stderr=subprocess.PIPE
        )
        probe = namespace.run(
            [
                sys.executable,
                "-c",
                "from tests.support.brokers import wait_for_port; "
                "wait_for_port(5555); wait_for_port(5556)",
            ],
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
        process.terminate()
        _, stderr = process.communicate(timeout=2)
        assert process.returncode == 0, stderr.decode()
    finally:
        lan.close()


def test_a_taken_port_is_explained_not_a_traceback(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    raw = config_document(tmp_path / "data")
    raw["messaging"].update({"port": taken, "connect_timeout": 300})
    path = write_yaml(tmp_path / "edge.yaml", raw)
    try:
        result = cli("run", "--config", str(path), env=repo_env)
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"{taken} is already in use" in result.stderr and "Traceback" not in result.stderr


def test_pub_and_sub_with_mqtt_style_filters(
    appliance: tuple[Path, dict], repo_env: dict[str, str]
) -> None:
    path, _ = appliance
    topics = ("agent/a1/status", "agent/a1/statusx", "agent/a1/status/deep", "agent/a2/status")

    def publish_all() -> None:
        for topic in topics:
            result = cli(
                "pub",
                topic,
                json.dumps({"type": "INFO", "topic": topic}),
                "--config",
                str(path),
                env=repo_env,
            )
            assert result.returncode == 0, result.stderr

    sub = spawn("sub", "agent/+/status", "-v", "-C", "2", "--config", str(path), env=repo_env)
    publish_all()
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    lines = out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["agent/a1/status", "agent/a2/status"]
    assert json.loads(lines[0].split(" ", 1)[1]) == {"type": "INFO", "topic": "agent/a1/status"}

    sub_json = spawn("sub", "#", "--json", "-C", "3", "--config", str(path), env=repo_env)
    publish_all()
    out, err = sub_json.communicate(timeout=20)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["topic"] for r in records] == list(topics[:3])
    assert records[0]["payload"]["type"] == "INFO"


def test_every_command_reads_the_file_the_editor_saved(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    """No --config anywhere: run, sub and pub all take the bus from the saved file (pub and sub
    used the embedded defaults' ports while run used the saved ones)."""
    data = tmp_path / "data"
    raw = config_document(data)
    write_yaml(saved_config_path(data), raw)
    env = {**repo_env, "ARGENTIC_EDGE_DATA_DIR": str(data)}
    process = spawn("run", env=env)
    try:
        wait_for_port(raw["messaging"]["port"])
        wait_for_port(raw["messaging"]["backend_port"])
        sub = spawn("sub", "agent/#", "-C", "1", env=env)
        published = cli("pub", "agent/saved", json.dumps({"type": "INFO"}), "--wait", "10", env=env)
        assert published.returncode == 0, published.stderr
        out, err = sub.communicate(timeout=20)
        assert sub.returncode == 0, err
        assert json.loads(out) == {"type": "INFO"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert f"configuration: {saved_config_path(data).resolve()}" in stderr


def test_pub_refuses_what_the_bus_cannot_carry(
    appliance: tuple[Path, dict], repo_env: dict[str, str]
) -> None:
    path, _ = appliance
    result = cli("pub", "agent/with space", "{}", "--config", str(path), env=repo_env)
    assert result.returncode == 1 and "cannot contain a space" in result.stderr


def test_pub_without_a_bus_says_so(tmp_path: Path, repo_env: dict[str, str]) -> None:
    path, raw = write_config(tmp_path)
    raw["messaging"]["connect_timeout"] = 300
    write_yaml(path, raw)
    result = cli("pub", "a/b", "{}", "--config", str(path), env=repo_env)
    assert result.returncode == 1 and "no bus answers" in result.stderr


def test_standalone_proxy_prints_its_counters(tmp_path: Path, repo_env: dict[str, str]) -> None:
    path, raw = write_config(tmp_path)
    proxy = spawn("proxy", "--config", str(path), env=repo_env)
    wait_for_port(raw["messaging"]["port"])
    sub = spawn("sub", "x/#", "-C", "3", "--config", str(path), env=repo_env)
    for n in range(3):
        assert cli("pub", f"x/{n}", "{}", "--config", str(path), env=repo_env).returncode == 0
    sub.communicate(timeout=20)
    proxy.send_signal(signal.SIGINT)
    out, err = proxy.communicate(timeout=10)
    assert proxy.returncode == 0, err
    counters = yaml.safe_load(out)["counters"]
    assert counters["frontend"]["messages_in"] >= 3
    assert counters["backend"]["messages_out"] >= 3


def test_version_and_help(repo_env: dict[str, str]) -> None:
    assert cli("--version", env=repo_env).stdout.startswith("argentic-edge ")
    assert "check-config" in cli("--help", env=repo_env).stdout
    assert cli("no-such-command", env=repo_env).returncode == 2


def test_global_options_work_before_and_after_the_command(repo_env: dict[str, str]) -> None:
    """The README promises `--log-level` and `--version` in either place."""
    for args in (["run", "--version"], ["pub", "--version"], ["--version"]):
        answer = cli(*args, env=repo_env)
        assert answer.returncode == 0 and answer.stdout.startswith("argentic-edge "), args
    parser = build_parser()
    assert parser.parse_args(["--log-level", "debug", "run"]).log_level == "debug"
    assert parser.parse_args(["run", "--log-level", "DEBUG"]).log_level == "debug"
    assert parser.parse_args(["pub", "t", "{}", "--log-level", "error"]).log_level == "error"
    assert parser.parse_args(["--log-level", "warning", "sub", "#"]).log_level == "warning"
    assert parser.parse_args(["run"]).log_level is None
    assert parser.parse_args(["certs", "show", "--log-level", "info"]).log_level == "info"


def test_bench_only_offers_every_suite_the_bench_runs() -> None:
    """``argentic-edge bench --only`` takes each suite ``python -m bench`` knows, and no other."""
    parser = build_parser()
    for name in SUITES + OPT_IN:
        assert parser.parse_args(["bench", "--only", name]).only == [name]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--only", "no-such-suite"])


def _subscriber_joined(path: Path, topic: str, env: dict[str, str]) -> None:
    """Wait until a subscriber covering ``topic`` is on the bus: pub says when none is."""
    probe = cli("pub", "-t", topic, "-n", "--wait", "10", "-c", str(path), env=env)
    assert "reached no one" not in probe.stderr, probe.stderr


def test_pub_and_sub_in_mosquittos_idiom(
    appliance: tuple[Path, dict], repo_env: dict[str, str]
) -> None:
    """-t (repeatable), -m, -h, -p, -l, -s and -F as mosquitto_pub/_sub take them."""
    path, raw = appliance
    bus = raw["messaging"]
    host = ["-h", "127.0.0.1"]
    sub = spawn(
        "sub", "-t", "one/+/x", "-t", "two/#", "-F", r"%t\t%l\t%J", "-C", "4",
        *host, "-p", str(bus["backend_port"]), env=repo_env,
    )  # fmt: skip
    _subscriber_joined(path, "two/probe", repo_env)
    pub = ["pub", *host, "-p", str(bus["port"])]
    assert cli(*pub, "-t", "one/a/x", "-m", '{"n": 1}', env=repo_env).returncode == 0
    lines = cli(*pub, "-t", "two/lines", "-l", stdin='{"n": 2}\n\n{"n": 3}\n', env=repo_env)
    assert lines.returncode == 0 and "reached no one" not in lines.stderr, lines.stderr
    whole = cli(*pub, "-t", "two/whole", "-s", stdin='{"n":\n 4}', env=repo_env)
    assert whole.returncode == 0, whole.stderr
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    received = [(topic, json.loads(document)) for topic, _length, document in rows]
    assert [(topic, record["payload"]) for topic, record in received] == [
        ("two/probe", ""),  # -n: the empty payload; %J leaves what is not JSON a string
        ("one/a/x", {"n": 1}),
        ("two/lines", {"n": 2}),
        ("two/lines", {"n": 3}),
    ]
    assert [row[1] for row in rows] == ["0", "8", "8", "8"]


def test_sub_W_times_out_with_mosquittos_exit_code(
    appliance: tuple[Path, dict], repo_env: dict[str, str]
) -> None:
    path, _ = appliance
    started = time.monotonic()
    result = cli("sub", "-t", "nothing/#", "-W", "1", "-c", str(path), env=repo_env)
    assert result.returncode == 27, result.stderr
    assert 1 <= time.monotonic() - started < 10
    assert "timed out after 1s" in result.stderr


def test_pub_says_when_no_subscriber_covers_the_topic(
    appliance: tuple[Path, dict], repo_env: dict[str, str]
) -> None:
    path, _ = appliance
    alone = cli(
        "pub", "-t", "nobody/here", "-m", "{}", "--wait", "0.3", "-c", str(path), env=repo_env
    )
    assert alone.returncode == 0
    assert "covers 'nobody/here'" in alone.stderr and "reached no one" in alone.stderr
    sub = spawn("sub", "nobody/#", "-C", "1", "-c", str(path), env=repo_env)
    heard = cli("pub", "nobody/here", "{}", "--wait", "10", "-c", str(path), env=repo_env)
    assert heard.returncode == 0 and heard.stderr == ""
    assert sub.communicate(timeout=20)[0] == "{}\n"


def test_pub_refuses_two_message_sources(repo_env: dict[str, str]) -> None:
    result = cli("pub", "-t", "a/b", "-m", "{}", "-n", env=repo_env)
    assert result.returncode == 2 and "exactly one message source" in result.stderr
    assert "got -m, -n" in result.stderr


def test_sub_formats_follow_mosquitto() -> None:
    """-F: mosquitto_sub's sequences for what a bus message has (no QoS, no properties)."""
    payload = b'{"a": 1}'
    assert format_message(r"%t|%p|%l|%x|%%|\t\\", "x/y", payload) == (
        'x/y|{"a": 1}|8|' + payload.hex() + "|%|\t\\"
    )
    assert format_message("%X", "t", b"\xab") == "AB"
    record = json.loads(format_message("%J", "x/y", payload, now=0))
    assert record["payload"] == {"a": 1} and record["topic"] == "x/y"
    assert json.loads(format_message("%j", "x/y", payload, now=0))["payload"] == '{"a": 1}'
    assert format_message("%U", "t", b"", now=12.5) == "12.500000000"
    assert format_message("%z %q", "t", b"") == "%z %q"  # unknown sequences stay as written


def test_certs_takes_the_configuration_like_every_command(
    tmp_path: Path, repo_env: dict[str, str]
) -> None:
    """`certs --config FILE` uses the file's data_dir and node_name; options still win."""
    path, _ = write_config(tmp_path, node_name="kitchen")
    made = cli("certs", "init", "--config", str(path), env=repo_env, timeout=60)
    assert made.returncode == 0, made.stderr
    assert str(tmp_path / "data" / "certs") in made.stdout
    shown = cli("certs", "show", "--json", "-c", str(path), env=repo_env, timeout=60)
    server = next(c for c in json.loads(shown.stdout) if c["name"] == "server")
    assert "kitchen" in server["sans"]
    elsewhere = tmp_path / "other"
    override = cli(
        "certs", "show", "-c", str(path), "--data-dir", str(elsewhere), env=repo_env, timeout=60
    )
    assert override.returncode == 1 and str(elsewhere / "certs") in override.stderr
    broken = write_yaml(tmp_path / "broken.yaml", {"node_name": "no spaces allowed"})
    refused = cli("certs", "show", "-c", str(broken), env=repo_env)
    assert refused.returncode == 1 and "node_name" in refused.stderr
