"""The appliance as users run it: ``python -m argentic_edge ...`` in a process of its own.

Security and fault tests look at it from outside (its sockets, its output, /proc, its HTTP
answers), and a SIGKILL must hit the appliance, not pytest. ``Process`` runs any command and
keeps its output in one log file for grepping; ``Appliance`` is a ``run --config`` of a document
that a test starts, kills, restarts and reads through its web API (Bearer token).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.brokers import wait_for_port
from tests.support.config import REPO_ROOT, TOKEN, config_document, web_section, write_yaml

_UNVERIFIED = ssl._create_unverified_context()  # the appliance's own CA; not what is tested here


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "argentic_edge", *args]


def environment(**extra: str) -> dict[str, str]:
    """This checkout on the path; no data directory inherited from the shell running the tests."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ARGENTIC_EDGE_DATA_DIR", None)
    return {**env, **extra}


def appliance_document(data_dir: Path, **sections: Any) -> dict[str, Any]:
    """A configuration with the web API on (for health and status, with ``TOKEN``) and every
    other optional service off; ``sections`` replace whole sections."""
    return config_document(data_dir, **{"web": web_section(), **sections})


class Process:
    """``argentic-edge <args>`` in a child process; stdout and stderr go to ``log_path``.

    A context manager: started on entry (unless already started), stopped with SIGTERM on exit.
    """

    def __init__(
        self,
        workdir: Path,
        args: tuple[str, ...],
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.env = env or {}
        self.prefix = prefix or []  # e.g. ["prlimit", ...] to run under a descriptor limit
        self.log_path = workdir / "appliance.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, wait_port: int | None = None, timeout: float = 20.0) -> Self:
        """Start it (output appended to the log across restarts); with ``wait_port``, until
        that port accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, *command(*self.args)],
                env=environment(**self.env),
                stdout=log,
                stderr=log,
                cwd=self.workdir,
            )
        if wait_port is not None:
            try:
                wait_for_port(wait_port, timeout=timeout)
            except TimeoutError:
                self.stop()
                raise AssertionError(f"the appliance did not start:\n{self.output()}") from None
        return self

    def terminate(self, timeout: float = 15.0) -> bool:
        """SIGTERM and wait; SIGKILL after ``timeout``. False when it needed the SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code. Not stopping in time is a failure (after a SIGKILL)."""
        assert self.process is not None
        if not self.terminate(timeout):
            raise AssertionError(
                f"the appliance ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}"
            )
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the power cord, as far as the process can tell."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def wait_for_output(self, text: str, timeout: float = 20.0) -> str:
        """Poll the log until ``text`` shows up (a log line is the only signal a separate
        process gives); the output so far."""
        deadline = time.monotonic() + timeout
        while text not in (output := self.output()):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the output:\n{output}")
            time.sleep(0.05)
        return output

    def output(self) -> str:
        """Everything it wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def said_once(self, text: str) -> str:
        """The log, once it is shown to say ``text`` exactly once and no traceback: what bad
        input or an exhausted limit may leave behind."""
        log = self.output()
        assert log.count(text) == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        return log

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:]) or "(no log)"

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Appliance(Process):
    """``argentic-edge run --config`` of ``document``. ``start()`` waits until its web API
    answers; the config file is written to the workdir first unless told otherwise."""

    def __init__(
        self, workdir: Path, document: dict[str, Any], prefix: list[str] | None = None
    ) -> None:
        self.config_path = workdir / "argentic-edge.yaml"
        super().__init__(
            workdir,
            ("run", "--config", str(self.config_path)),
            env={"PYTHONUNBUFFERED": "1"},
            prefix=prefix,
        )
        self.document = document
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

    def write_config(self) -> None:
        write_yaml(self.config_path, self.document)

    def start(
        self, wait_port: int | None = None, timeout: float = 20.0, write_config: bool = True
    ) -> Self:
        if write_config:
            self.write_config()
        super().start(wait_port, timeout)
        self.starts += 1
        try:
            self.wait_answering(timeout)
        except AssertionError:
            self.kill()  # never leave a half-started appliance holding ports behind
            raise
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, SIGKILL after ``timeout`` without failing: fault tests stop appliances
        they damaged on purpose, and judge them by what they assert, not by the shutdown."""
        self.terminate(timeout)
        return self.process.returncode if self.process is not None else 0

    def wait_answering(self, timeout: float) -> None:
        """Until /healthz answers at all (200 or 503): the process is up and serving."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the appliance exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                self.health()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the appliance did not answer within {timeout}s:\n{self.log_tail()}"
                    ) from None
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

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """(status, JSON body or text) from the web API, authenticated with the token."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
        )
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
