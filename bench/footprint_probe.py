"""Runs inside a network namespace: starts the appliance with everything enabled, measures.

Prints one JSON object: start-to-healthy seconds, idle RSS (MiB) and idle CPU (% of one core)
for the appliance, and the RSS of a bare libzmq proxy process as the floor Python itself costs.
"""

from __future__ import annotations

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

TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "footprint-bench-token"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
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


def idle_cpu(pid: int, window: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started) * 100


def main(idle_window: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="footprint-"))
    broker = None
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    config = {
        "node_name": "footprint", "data_dir": str(work / "data"),
        "bridge": {"enabled": True, "mqtt": {"broker_address": "127.0.0.1", "port": 1883}},
        "discovery": {"enabled": True}, "certificates": {"enabled": True},
        "web": {"enabled": True, "api_token": TOKEN},
    }
    if Path(mosquitto).exists():
        (work / "mosquitto.conf").write_text("listener 1883 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")],
                                  stderr=subprocess.DEVNULL)
    (work / "edge.yaml").write_text(yaml.safe_dump(config))
    result: dict[str, float] = {}
    started = time.monotonic()
    edge = subprocess.Popen([sys.executable, "-m", "argentic_edge", "--log-level", "warning",
                             "run", "--config", str(work / "edge.yaml")],
                            stderr=subprocess.DEVNULL)
    try:
        while not healthy("https://127.0.0.1:8099/healthz"):
            if edge.poll() is not None or time.monotonic() - started > 30:
                raise SystemExit("the appliance did not become healthy")
            time.sleep(0.01)
        result["start_to_healthy_s"] = time.monotonic() - started
        time.sleep(3)  # let start-up work (certificates, first mDNS announcements) settle
        result["idle_cpu_pct"] = idle_cpu(edge.pid, idle_window)
        result["idle_rss_mib"] = rss_mib(edge.pid)
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
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)) + "\n")
