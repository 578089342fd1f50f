"""The shell scripts a new user runs first: shellcheck-clean, and scripts/setup on a Python
that cannot make virtualenvs (stock Debian without python3-venv) says what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import REPO_ROOT

SCRIPTS = sorted(p for p in (REPO_ROOT / "scripts").iterdir() if p.is_file())


def test_the_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (scripts/setup --test installs it)")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """pytest's tmp_path lives under a directory only root may enter."""
    path = Path(tempfile.mkdtemp(prefix="ae-setup-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_setup_without_ensurepip_says_exactly_what_to_install(world_readable_dir: Path) -> None:
    """The system's python3 with ensurepip made unimportable, as Debian's is until python3-venv
    is installed; run as an unprivileged user, so the script may not install it itself."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not SYSTEM_PYTHON.exists():
        pytest.skip("needs root, setpriv and /usr/bin/python3")
    tmp_path = world_readable_dir
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "ensurepip.py").write_text("raise ImportError('ensurepip is not installed')\n")
    python = tmp_path / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={blocked} exec {SYSTEM_PYTHON} "$@"\n')
    python.chmod(0o755)
    for path in (tmp_path, checkout, checkout / "scripts", blocked):
        path.chmod(0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash",
         str(checkout / "scripts" / "setup")],
        env={"PATH": os.environ["PATH"], "PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert result.returncode == 1, result.stderr
    assert f"sudo apt-get install python3-venv python{version}-venv" in result.stderr
    assert not (checkout / ".venv").exists()
