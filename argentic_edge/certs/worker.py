"""The running appliance's certificate work, done in a short-lived child process.

:mod:`argentic_edge.certs.files` says why: the child imports cryptography, the appliance does not.
The parent (:func:`refresh`) writes one JSON request to the child's stdin: the files' settings,
the warnings already given and the log level. The child makes the files ready
(:meth:`CertStore.ensure`), describes them (:meth:`CertStore.status`) and answers with one JSON
object on stdout: the certificates or the error, and the log records it made, which the parent
logs under their own logger names, so a user reads one log in one place.

Run as ``python -m argentic_edge.certs.worker``; nothing else is meant to start it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from argentic_edge.certs.files import CertError, CertFiles, CertInfo

log = logging.getLogger(__name__)

TIMEOUT = 120.0  # key generation is quick; an fsync on a worn SD card may not be
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


async def refresh(files: CertFiles, warned: set[str], timeout: float = TIMEOUT) -> list[CertInfo]:
    """Make ``files`` ready and describe them, in a child; CertError for every way it can fail.

    ``warned`` holds the once-only warnings given so far; it is updated in place.
    """
    request = json.dumps(
        {
            "files": files.settings(),
            "warned": sorted(warned),
            "level": logging.getLogger("argentic_edge.certs.issuing").getEffectiveLevel(),
        }
    ).encode()
    path = os.pathsep.join(filter(None, (PACKAGE_ROOT, os.environ.get("PYTHONPATH"))))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(request), timeout)
    except BaseException as exc:  # timeout, or the service stopping: leave no child behind
        if process.returncode is None:
            process.kill()
            await asyncio.shield(process.wait())
        if isinstance(exc, TimeoutError):
            raise CertError(
                f"{files.directory}: checking the certificates took over {timeout:g} s"
            ) from None
        raise
    try:
        answer = json.loads(out)
    except ValueError:
        lines = err.decode(errors="replace").strip().splitlines()
        log.debug("certificate worker output: %s", err.decode(errors="replace"))
        reason = lines[-1] if lines else f"exit status {process.returncode}"
        raise CertError(f"{files.directory}: checking the certificates failed: {reason}") from None
    for name, level, message in answer["logs"]:
        logging.getLogger(name).log(level, "%s", message)
    warned.update(answer["warned"])
    if answer["error"] is not None:
        raise CertError(answer["error"])
    return [CertInfo.from_dict(info) for info in answer["certificates"]]


class _Records(logging.Handler):
    """Keeps what the store logs, to be sent to the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def work(request: dict[str, Any]) -> dict[str, Any]:
    """The child's whole job, apart from reading and writing JSON."""
    from argentic_edge.certs.issuing import CertStore

    records = _Records()
    package = logging.getLogger("argentic_edge")
    package.addHandler(records)
    package.setLevel(request["level"])
    package.propagate = False
    error, certificates, warned = None, [], set(request["warned"])
    try:
        store = CertStore(**request["files"])
        store.warned = warned
        store.ensure()
        certificates = [info.to_dict() for info in store.status()]
    except (CertError, OSError) as exc:  # OSError: a directory listing the store does not wrap
        error = str(exc)
    return {
        "certificates": certificates,
        "error": error,
        "logs": records.records,
        "warned": sorted(warned),
    }


def main() -> int:
    answer = work(json.load(sys.stdin))
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
