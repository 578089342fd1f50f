"""The appliance as a user runs it (``python -m argentic_edge run --config FILE``), in a child
process a test can SIGKILL, restart and measure from /proc (RSS, threads, file descriptors).

Fault tests need a process of its own: a SIGKILL must hit the appliance, not pytest, and memory
or descriptor growth is only visible from outside. The web API (Bearer token) is the window in.
(tests/support/appliance.py runs any ``argentic-edge`` command and keeps its output for the security
tests, which read it; this one manages a configured ``run`` through its API.)
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.appliance import command, environment
from tests.support.brokers import free_port

_UNVERIFIED = ssl._create_unverified_context()  # the appliance's own CA; not what is tested here
TOKEN = "fault-token-5d1e"


def appliance_document(data_dir: Path, **sections: Any) -> dict[str, Any]:
    """A configuration on free loopback ports with the web API on (for health and status) and
    every other optional service off; ``sections`` replace whole sections."""
    document: dict[str, Any] = {
        "node_name": "faulty",
        "data_dir": str(data_dir),
        "messaging": {"broker_address": "127.0.0.1", "port": free_port(),
                      "backend_port": free_port()},
        "bridge": {"enabled": False},
        "discovery": {"enabled": False},
        "certificates": {"enabled": False},
        "web": {"host": "127.0.0.1", "port": free_port(), "password": "pw-not-used-here",
                "api_token": TOKEN},
    }
    document.update(sections)
    return document


class Appliance:
    """One ``argentic_edge run`` child. ``start()`` waits until its web API answers."""

    def __init__(self, workdir: Path, document: dict[str, Any],
                 prefix: list[str] | None = None) -> None:
        self.workdir = workdir
        self.document = document
        self.prefix = prefix or []  # e.g. ["unshare", "-m", ...] to run in a mount namespace
        self.config_path = workdir / "argentic-edge.yaml"
        self.log_path = workdir / "appliance.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def web_port(self) -> int:
        return int(self.document["web"]["port"])

    @property
    def base_url(self) -> str:
        """https when the appliance has its certificates (it then serves TLS only)."""
        tls = self.document.get("certificates", {}).get("enabled", True)
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.web_port}"

    @property
    def bus_publish(self) -> str:
        return f"tcp://127.0.0.1:{self.document['messaging']['port']}"

    @property
    def bus_subscribe(self) -> str:
        return f"tcp://127.0.0.1:{self.document['messaging']['backend_port']}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.document, sort_keys=False))
        self.config_path.chmod(0o600)

    def start(self, timeout: float = 20.0, write_config: bool = True) -> Appliance:
        if write_config:
            self.write_config()
        env = environment(PYTHONUNBUFFERED="1")
        env.pop("ARGENTIC_EDGE_DATA_DIR", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, *command("run", "--config", str(self.config_path))],
                env=env, stdout=log, stderr=log, cwd=self.workdir)
        self.starts += 1
        try:
            self.wait_answering(timeout)
        except AssertionError:
            self.kill()  # never leave a half-started appliance holding ports behind
            raise
        return self

    def wait_answering(self, timeout: float) -> None:
        """Until /healthz answers at all (200 or 503): the process is up and serving."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the appliance exited with {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                self.health()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the appliance did not answer within {timeout}s:\n"
                                         f"{self.log_tail()}") from None
                time.sleep(0.05)

    def wait_healthy(self, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.health()
            if code == 200:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy within {timeout}s: {body}")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", timeout: float = 10.0
                ) -> tuple[int, Any]:
        """(status, JSON body or text) from the web API, authenticated with the token."""
        request = urllib.request.Request(
            f"{self.base_url}{path}", data=body, method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=_UNVERIFIED) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def health(self) -> tuple[int, Any]:
        return self.request("GET", "/healthz", timeout=2.0)

    def status(self) -> dict[str, Any]:
        code, body = self.request("GET", "/api/status")
        assert code == 200, body
        return body  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL: the power cord, as far as the process can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def rss_kib(pid: int) -> int:
    """Resident set size from /proc/<pid>/status (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))
