"""A real Mosquitto broker for tests, started on a free loopback port.

Tests talk to the same broker users run, configured the way each test needs (plain, TLS,
password file). The broker can be stopped and restarted on the same port to simulate outages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, and not one handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so a config asking for two ports could get one twice (seen in CI: ``backend_port``
    equal to ``port``).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def end_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` and wait for the end; SIGKILL after 10 s without one."""
    process.send_signal(sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class Mosquitto:
    """One mosquitto process; ``extra_conf`` lines are appended to its listener block."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: list[str] = field(default_factory=list)
    persistence: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            *self.extra_conf,
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if not any(
            line.startswith(("allow_anonymous", "password_file")) for line in self.extra_conf
        ):
            lines.append("allow_anonymous true")
        if os.geteuid() == 0 and not any(line.startswith("user ") for line in self.extra_conf):
            # Started as root, Mosquitto drops to the "mosquitto" user, which cannot read the
            # test's password files and keys or write its persistence file in a 0700 tmp dir.
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        self.write_conf()
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=log
        )
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            end_process(self.process, sig)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


def mqtt_publish(
    port: int,
    messages: dict[str, bytes],
    *,
    retain: bool = True,
    credentials: tuple[str, str] | None = None,
) -> None:
    """Publish each message (QoS 1, retained unless told) from a short-lived paho client."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-writer")
    if credentials is not None:
        client.username_pw_set(*credentials)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in messages.items():
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
