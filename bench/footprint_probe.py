"""Runs inside a network namespace: starts the appliance with everything enabled, measures.

Prints one JSON object: start-to-healthy seconds, idle RSS (MiB) and idle CPU (% of one core)
for the appliance, the RSS of a bare libzmq proxy process as the floor Python itself costs, and
what the Redis, RabbitMQ and Kafka client libraries would add to an appliance with only MQTT if
a disabled uplink imported them (it does not: tests/test_uplink_imports.py).

The appliance runs from a copy of the package with compiled bytecode, as an installed package
has it (pip compiles at install time): run from a source tree where no bytecode may be written
(PYTHONDONTWRITEBYTECODE), every start would compile every module, costing time and about 1 MiB.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "footprint-bench-token"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory from /proc: VmRSS in all, or RssAnon (private heap and stacks) and
    RssFile (pages of mapped libraries, shared with other processes and reclaimable)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def healthy(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def get_json(url: str) -> dict[str, object]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5, context=context) as answer:
        document: dict[str, object] = json.load(answer)
        return document


def wait_bridge_connected(url: str, timeout: float = 10) -> None:
    """The bridge must really be up (connected to the Mosquitto beside it) while measured."""
    deadline = time.monotonic() + timeout
    while True:
        bridge = get_json(url)["bridge"]
        if isinstance(bridge, dict) and bridge.get("state") == "connected":
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the bridge did not connect: {bridge}")
        time.sleep(0.05)


CLIENTS_PROBE = """
import os
from bench.footprint_probe import rss_mib
import argentic_edge.app, argentic_edge.bridge.mqtt
before = rss_mib(os.getpid())
import redis.asyncio, aio_pika, aiokafka
print(rss_mib(os.getpid()) - before)
"""


def client_libraries_mib(app: Path) -> float:
    """RSS the other uplinks' client libraries add to a process that loaded the appliance."""
    done = subprocess.run(
        [sys.executable, "-c", CLIENTS_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{app}{os.pathsep}{ROOT}"},
    )
    return float(done.stdout.split()[-1])


def installed_copy(work: Path) -> Path:
    """The package copied under ``work`` with its bytecode compiled; returns the path root."""
    root = work / "app"
    shutil.copytree(
        ROOT / "argentic_edge", root / "argentic_edge", ignore=shutil.ignore_patterns("__pycache__")
    )
    if not compileall.compile_dir(root / "argentic_edge", quiet=1):
        raise SystemExit("could not compile the package")
    return root


def idle_cpu(pid: int, window: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started) * 100


def main(idle_window: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="footprint-"))
    broker = None
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    config = {
        "node_name": "footprint",
        "data_dir": str(work / "data"),
        "bridge": {"enabled": True, "mqtt": {"broker_address": "127.0.0.1", "port": 1883}},
        "discovery": {"enabled": True},
        "certificates": {"enabled": True},
        "web": {"enabled": True, "api_token": TOKEN},
    }
    if Path(mosquitto).exists():
        (work / "mosquitto.conf").write_text("listener 1883 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen(
            [mosquitto, "-c", str(work / "mosquitto.conf")], stderr=subprocess.DEVNULL
        )
    (work / "edge.yaml").write_text(yaml.safe_dump(config))
    app = installed_copy(work)
    result: dict[str, float] = {}
    started = time.monotonic()
    edge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "argentic_edge",
            "--log-level",
            "warning",
            "run",
            "--config",
            str(work / "edge.yaml"),
        ],
        stderr=subprocess.DEVNULL,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(app)},
    )
    try:
        while not healthy("https://127.0.0.1:8099/healthz"):
            if edge.poll() is not None or time.monotonic() - started > 30:
                raise SystemExit("the appliance did not become healthy")
            time.sleep(0.01)
        result["start_to_healthy_s"] = time.monotonic() - started
        if broker is not None:
            wait_bridge_connected("https://127.0.0.1:8099/api/status")
        time.sleep(3)  # let start-up work (certificates, first mDNS announcements) settle
        result["idle_cpu_pct"] = idle_cpu(edge.pid, idle_window)
        result["idle_rss_mib"] = rss_mib(edge.pid)
        result["idle_rss_anon_mib"] = rss_mib(edge.pid, "RssAnon")
        result["idle_rss_file_mib"] = rss_mib(edge.pid, "RssFile")
    finally:
        edge.terminate()
        edge.wait(timeout=10)
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_proxy", "15555", "15556"])
    try:
        time.sleep(2)
        result["bare_proxy_rss_mib"] = rss_mib(bare.pid)
        result["bare_proxy_idle_cpu_pct"] = idle_cpu(bare.pid, min(idle_window, 3))
    finally:
        bare.terminate()
        bare.wait(timeout=10)
    result["client_libraries_mib"] = client_libraries_mib(app)
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)) + "\n")
