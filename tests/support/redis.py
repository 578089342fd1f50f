"""A real redis-server for tests, on a free loopback port with its own data directory.

Append-only persistence is on (fsync every write) so a SIGKILL loses nothing that Redis
acknowledged: the streams-mode restart tests rely on the stream and its consumer group being
there again after ``kill()`` and ``start()`` on the same port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.brokers import free_port, wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class RedisServer:
    """One redis-server process; ``extra_args`` are appended to its command line."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    tls: tuple[Path, Path, Path] | None = None  # (ca, cert, key): the port speaks only TLS
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--protected-mode", "no",
                *self._tls_args(),
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        wait_for_port(self.port)
        self._wait_loaded()
        return self

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        ca, cert, key = self.tls
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-ca-cert-file", str(ca),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-auth-clients", "optional",
        ]  # fmt: skip

    def _wait_loaded(self, timeout: float = 10.0) -> None:
        """The port opens before the append-only file is loaded (replies are -LOADING then)."""
        import redis

        tls = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        client = redis.Redis(host="localhost", port=self.port, socket_timeout=1, **tls)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
