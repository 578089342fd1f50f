"""A real rabbitmq-server for tests: an Erlang node of its own on free loopback ports.

RabbitMQ boots in seconds, not milliseconds, so tests share one node per session (the
``rabbitmq`` fixture) and tell their traffic apart by exchange and queue names. Everything the
node writes lives in its work directory: node name, Mnesia database, logs, the Erlang cookie
(``HOME``), and an empty plugin list (no management plugin: the uplink must not need it).

``kill()`` SIGKILLs the whole process group (the shell wrapper, the BEAM, its port helpers) and
``start()`` brings the node back on the same ports with the same database, as a power cut would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.brokers import free_port

RABBITMQ_SBIN = Path("/usr/lib/rabbitmq/bin")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
METHOD_FRAME = 1  # the broker's first frame after the header: Connection.Start
BOOT_TIMEOUT = 90.0  # seconds; a cold first boot creates the Mnesia schema


@dataclass
class RabbitServer:
    """One RabbitMQ node; ``port`` is AMQP, ``dist_port`` the Erlang distribution listener."""

    workdir: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    config_lines: list[str] = field(default_factory=list)  # rabbitmq.conf (TLS listeners...)
    process: subprocess.Popen[bytes] | None = None

    @property
    def node_name(self) -> str:
        return f"edge-test-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        plugins = self.workdir / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        return {
            **os.environ,
            "HOME": str(self.workdir),  # the Erlang cookie of this node and its rabbitmqctl
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),  # absent: the defaults
        }

    def start(self) -> RabbitServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_lines:
            (self.workdir / "rabbitmq.conf").write_text("\n".join(self.config_lines) + "\n")
        log = open(self.workdir / "console.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(RABBITMQ_SBIN / "rabbitmq-server")],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self._await_amqp()
        return self

    def _await_amqp(self) -> None:
        """Wait until the node answers the AMQP protocol header with Connection.Start: the
        listener opens last in RabbitMQ's boot, so the node then takes connections for real."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.workdir}/log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(AMQP_HEADER)
                    if sock.recv(1)[:1] == bytes([METHOD_FRAME]):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"RabbitMQ {self.node_name} did not start in {BOOT_TIMEOUT}s")

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node (list_exchanges, close_all_connections...)."""
        result = subprocess.run(
            [str(RABBITMQ_SBIN / "rabbitmqctl"), "-n", self.node_name, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
