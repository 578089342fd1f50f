"""A small disk the tests can fill up and turn read-only: a tmpfs mounted for one test.

Needs root (the test machine is); a test skips where mounting is not allowed.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=10, check=False)


@contextmanager
def small_disk(directory: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` on ``directory`` (created), unmounted at the end whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    result = mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "argentic-faults", str(directory))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(
            ["umount", "-l", str(directory)], capture_output=True, timeout=10, check=False
        )


def read_only(disk: Path, on: bool = True) -> None:
    """Remount the small disk read-only (or writable again)."""
    result = mount("-o", "remount,ro" if on else "remount,rw", str(disk))
    assert result.returncode == 0, result.stderr


def fill(disk: Path) -> Path:
    """Write a filler file until the disk says ENOSPC (unbuffered, to the last byte)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler
