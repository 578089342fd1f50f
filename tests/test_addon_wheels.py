"""Every runtime dependency installs in the add-on image without a compiler: for musllinux
aarch64 and x86_64 (CPython 3.13, Home Assistant's Alpine base) PyPI has a wheel, or the package
is pure Python. Asked the way pip in the image would ask, with ``pip download --only-binary``
into a temporary directory (the whole dependency tree, resolved for that platform, from the
versions installed here)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/simple"


def _wheels_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("addon_wheels", ROOT / "addon" / "wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WHEELS = _wheels_table()


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def pinned(requirement: str) -> str:
    """The requirement at the version installed here (the one the tests ran with): without a
    pin, pip would settle for an ancient pure-Python release rather than report that the
    current one has no musl wheel."""
    return f"{_name(requirement)}=={metadata.version(_name(requirement))}"


@pytest.fixture(scope="module")
def pypi() -> None:
    try:
        urllib.request.urlopen(f"{PYPI}/pip/", timeout=10).close()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        pytest.skip(f"PyPI ({PYPI}) is unreachable from here, so wheels cannot be checked: {exc}")


@pytest.mark.parametrize("platform", WHEELS.PLATFORMS)
def test_every_runtime_dependency_has_a_musl_wheel_or_is_pure_python(
    pypi: None, platform: str, tmp_path: Path
) -> None:
    excepted = {_name(name) for name in WHEELS.NO_MUSL_WHEEL}
    wanted = [pinned(r) for r in runtime_requirements() if _name(r) not in excepted]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",  # PyPI itself: no local wheel directory, index or constraints
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            WHEELS.PYTHON_VERSION,
            "--implementation",
            "cp",
            "--index-url",
            PYPI,
            "--dest",
            str(tmp_path),
            *wanted,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"pip found no {platform} wheel for a dependency (add it to addon/wheels.py "
        f"NO_MUSL_WHEEL with a Dockerfile builder stage, or pick another library):\n"
        f"{result.stderr[-3000:]}"
    )
    files = sorted(path.name for path in tmp_path.iterdir())
    downloaded = {_name(file.split("-")[0]) for file in files}
    assert {_name(r) for r in wanted} <= downloaded, files
    for file in files:
        assert file.endswith(".whl"), file
        tags = file.removesuffix(".whl").split("-")[-1]
        arch = platform.split("_", 3)[-1]
        assert tags == "any" or (tags.endswith(arch) and "musllinux" in tags), file


def test_every_exception_says_why_and_is_built_in_the_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    names = {_name(r) for r in runtime_requirements()}
    for name, reason in WHEELS.NO_MUSL_WHEEL.items():
        assert _name(name) in names, f"{name} is not a runtime dependency any more"
        assert len(reason.split()) >= 4, f"{name}: say why it has no musl wheel"
        assert name in dockerfile, f"the Dockerfile builds no {name} (a builder stage)"
