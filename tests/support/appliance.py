"""The appliance as users run it: ``python -m argentic_edge run`` in its own process.

The security tests look at it from outside (its sockets, its output, its HTTP answers), so it
runs as a separate process whose stdout and stderr are kept in files for grepping afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from tests.support.brokers import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "argentic_edge", *args]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    """A configuration file as a user keeps it: YAML, readable by its owner only."""
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    path.chmod(0o600)
    return path


@dataclass
class Appliance:
    """``argentic-edge <args>`` started on entry, stopped with SIGTERM on exit."""

    workdir: Path
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, wait_port: int | None = None, timeout: float = 20.0) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "stdout", "wb") as out, open(self.workdir / "stderr", "wb") as err:
            self.process = subprocess.Popen(command(*self.args), stdout=out, stderr=err,
                                            env=environment(**self.env))
        if wait_port is not None:
            try:
                wait_for_port(wait_port, timeout=timeout)
            except TimeoutError:
                self.stop()
                raise AssertionError(f"the appliance did not start:\n{self.output()}") from None
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code. Not stopping in time is a failure (after a SIGKILL)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the appliance ignored SIGTERM for {timeout}s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.process.returncode

    def wait_for_output(self, text: str, timeout: float = 20.0) -> str:
        """Poll the output files until ``text`` shows up (a log line is the only signal a
        separate process gives); the output so far."""
        deadline = time.monotonic() + timeout
        while text not in (output := self.output()):
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the output:\n{output}")
            time.sleep(0.05)
        return output

    def output(self) -> str:
        """Everything it wrote to stdout and stderr so far."""
        return "".join((self.workdir / name).read_text(errors="replace")
                       for name in ("stdout", "stderr") if (self.workdir / name).exists())

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
