"""Editing the configuration file from the web: mask, restore, validate, apply, save.

The editor works on the raw file, not on the parsed configuration, so ``${VAR}`` references,
comments (in the YAML editor) and Argentic's own sections stay as the user wrote them. Secrets go to
the browser as the mask; a mask that comes back unchanged is replaced by the stored value before
anything is validated, so "leave it as it is" keeps the secret.

A change is validated exactly as ``check-config`` does, applied to the running appliance, and only
then written (atomically, the previous file kept as ``<file>.bak``). A change that fails validation
or fails to apply leaves both the running configuration and the file as they were.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from argentic_edge.config import (
    MASK,
    ConfigError,
    EdgeConfig,
    Problem,
    Secret,
    compose_yaml,
    file_problems,
    parse_config,
    parse_yaml,
)
from argentic_edge.storage import atomic_write, describe_os_error, saved_config_path
from argentic_edge.web.appliance import Appliance
from argentic_edge.web.schema import dotted, form_fields, is_secret

STARTER = (
    "# No configuration file yet: every default is in effect.\n"
    "# Write only what you want to change, for example:\n"
    "# web:\n#   port: 8099\n"
)
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_NODE_PREFIX = re.compile(r"(?:[&!]\S*\s+)*")
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_QUIET = (None, "'", '"')  # scalar styles that can be copied as written; block styles cannot

PathKeys = tuple[Any, ...]


class ApplyError(Exception):
    """A valid configuration that could not be put into effect (or saved); nothing changed."""


def config_target(appliance: Appliance) -> Path:
    """Where the editor reads and saves: the file the appliance runs from, else the data dir."""
    if appliance.config_path:
        return Path(appliance.config_path)
    return saved_config_path(appliance.config.data_path)


# --- YAML with positions -------------------------------------------------------------------


def _scalars(root: yaml.Node | None) -> Iterator[tuple[PathKeys, yaml.ScalarNode]]:
    """Every scalar with its path of keys, aliases followed (compose_yaml bounds them)."""

    def walk(node: yaml.Node, path: PathKeys) -> Iterator[tuple[PathKeys, yaml.ScalarNode]]:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
                yield from walk(value, path + (label,))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                yield from walk(value, path + (index,))
        elif isinstance(node, yaml.ScalarNode):
            yield path, node

    if root is not None:
        yield from walk(root, ())


def load_text(text: str) -> Any:
    """Parse YAML text into a raw document; a ConfigError names what is wrong with it."""
    return parse_yaml(text)


def _maskable(value: Any) -> bool:
    """A secret value worth hiding: set, and not merely a ``${VAR}`` reference."""
    if value is None or value == "":
        return False
    return not (isinstance(value, str) and _REFERENCE.fullmatch(value))


def _node_maskable(node: yaml.ScalarNode) -> bool:
    return node.tag != _NULL_TAG and _maskable(node.value)


def _splice(text: str, edits: list[tuple[yaml.ScalarNode, str]]) -> str:
    """Replace each node's value (keeping its anchor/tag and trailing newline) with new text."""
    for node, replacement in sorted(edits, key=lambda e: e[0].start_mark.index, reverse=True):
        start, end = node.start_mark.index, node.end_mark.index
        span = text[start:end]
        prefix = _NODE_PREFIX.match(span).group(0)  # type: ignore[union-attr]
        body = span[len(prefix) :]
        trailing = body[len(body.rstrip()) :]
        text = text[:start] + prefix + replacement + trailing + text[end:]
    return text


def _source(text: str, node: yaml.ScalarNode) -> str:
    """How to write a stored scalar back: as it was written when it fits on one line."""
    span = text[node.start_mark.index : node.end_mark.index]
    body = span[len(_NODE_PREFIX.match(span).group(0)) :].rstrip()  # type: ignore[union-attr]
    if node.style in _QUIET and "\n" not in body:
        return body
    return json.dumps(node.value, ensure_ascii=False)


def _secret_nodes(text: str, document: Any) -> Iterator[tuple[PathKeys, yaml.ScalarNode]]:
    seen: set[int] = set()
    for path, node in _scalars(compose_yaml(text)):
        if id(node) not in seen and is_secret(path, document):
            seen.add(id(node))
            yield path, node


def masked_text(text: str) -> str:
    """The YAML text with every secret value replaced by the mask, formatting kept."""
    document = load_text(text)
    edits = [
        (node, json.dumps(MASK))
        for _, node in _secret_nodes(text, document)
        if _node_maskable(node)
    ]
    return _splice(text, edits)


def restore_text(submitted: str, stored: str | None) -> str:
    """Put the stored secrets back where the submitted text still shows the mask."""
    document = load_text(submitted)
    try:
        kept = dict(_scalars(compose_yaml(stored))) if stored else {}
    except ConfigError:
        kept = {}  # an unreadable stored file has no secrets to keep
    edits, problems = [], []
    for path, node in _secret_nodes(submitted, document):
        if node.tag != _STR_TAG or node.value != MASK:
            continue
        old = kept.get(path)
        if old is None or not _node_maskable(old):
            problems.append(_unknown_mask(path))
        else:
            edits.append((node, _source(stored or "", old)))
    if problems:
        raise ConfigError(problems)
    return _splice(submitted, edits)


# --- plain documents (the form and the JSON API) -------------------------------------------


def _map(value: Any, path: PathKeys, visit: Callable[[Any, PathKeys], Any]) -> Any:
    if isinstance(value, Mapping):
        return {key: _map(item, path + (key,), visit) for key, item in value.items()}
    if isinstance(value, list):
        return [_map(item, path + (index,), visit) for index, item in enumerate(value)]
    return visit(value, path)


def _lookup(document: Any, path: PathKeys) -> tuple[bool, Any]:
    for key in path:
        in_mapping = isinstance(document, Mapping) and key in document
        in_list = isinstance(document, list) and isinstance(key, int) and 0 <= key < len(document)
        if not (in_mapping or in_list):
            return False, None
        document = document[key]
    return True, document


def _unknown_mask(path: PathKeys) -> Problem:
    return Problem(
        dotted(path), MASK, "is masked, but there is no stored value to keep here; type the value"
    )


def restore_document(submitted: Any, stored: Any, shown: Any) -> Any:
    """Put stored values back wherever the submitted document still has a mask that was shown.

    ``shown`` is the stored document as the browser got it (parsed from the masked text), so a
    value masked because a secret shares it through a YAML alias comes back too.
    """
    problems = []

    def visit(value: Any, path: PathKeys) -> Any:
        if value != MASK:
            return value
        found, old = _lookup(stored, path)
        if found and _lookup(shown, path) == (True, MASK) and _maskable(old):
            return old
        if is_secret(path, submitted):
            problems.append(_unknown_mask(path))
        return value

    restored = _map(submitted, (), visit)
    if problems:
        raise ConfigError(problems)
    return restored


# --- validation ----------------------------------------------------------------------------


def validate(document: Any, compose: Callable[[Any], Any] | None = None) -> EdgeConfig:
    """The same checks as ``check-config``: the schema, then the files it names.

    ``compose`` turns the edited file into the configuration that runs (the add-on merges its
    options and the Supervisor's broker with it); without it the file is the configuration.
    """
    config = parse_config(compose(document) if compose is not None else document)
    problems = file_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _shown(problem: Problem) -> Any:
    value = problem.value
    if isinstance(value, Secret) or value == MASK:
        return MASK
    if isinstance(value, (Mapping, list, tuple)):
        return f"<{type(value).__name__}>"
    if isinstance(value, str):
        return value[:200]
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)[:200]


def problems_json(error: ConfigError, document: Any) -> list[dict[str, Any]]:
    """Problems for the browser: values at secret paths (or of secret type) masked."""
    out = []
    for problem in error.problems:
        path = tuple(
            int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", problem.path) if p
        )
        value = MASK if path and is_secret(path, document) else _shown(problem)
        out.append({"path": problem.path, "value": value, "expected": problem.expected})
    return out


# --- the editor ----------------------------------------------------------------------------

_locks: weakref.WeakKeyDictionary[Appliance, asyncio.Lock] = weakref.WeakKeyDictionary()
_saving: set[asyncio.Task[dict[str, Any]]] = set()  # strong references while a save runs


class ConfigEditor:
    """Reads, checks and saves the configuration of one appliance; one save at a time each."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance

    @property
    def path(self) -> Path:
        return config_target(self.appliance)

    def stored_text(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                [Problem(str(self.path), None, f"cannot read the file: {exc}")]
            ) from None

    def _stored(self) -> tuple[Any, Any]:
        """The stored document and the same as the browser sees it (masked)."""
        text = self.stored_text()
        try:
            return (load_text(text), load_text(masked_text(text))) if text else (None, None)
        except ConfigError:
            return None, None  # an unreadable stored file has no secrets to keep

    def view(self) -> dict[str, Any]:
        """The masked file, as text and as a document, with the form's fields."""
        text = self.stored_text()
        view: dict[str, Any] = {"path": str(self.path), "exists": text is not None, "problems": []}
        try:
            view["yaml"] = masked_text(text) if text else STARTER
            masked = load_text(view["yaml"]) if text else None
        except ConfigError as exc:
            # Without parsing it, the secrets in it cannot be found: the text is not shown.
            masked = None
            view["yaml"] = f"# {self.path} cannot be shown: it is not valid YAML.\n"
            view["problems"] = problems_json(exc, None)
        masked = masked if masked is not None else {}
        view.update(document=masked, fields=form_fields(masked))
        return view

    def prepare_document(self, submitted: Any) -> tuple[str, EdgeConfig]:
        document = restore_document(submitted, *self._stored())
        config = validate(document, self.appliance.compose)
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True), config

    def prepare_text(self, submitted: str) -> tuple[str, EdgeConfig]:
        restored = restore_text(submitted, self.stored_text())
        return restored, validate(load_text(restored), self.appliance.compose)

    async def save(self, prepare: Callable[[], tuple[str, EdgeConfig]]) -> dict[str, Any]:
        """Validate (``prepare``), apply, then write. Runs to its end even if the request that
        asked for it goes away: the web service itself may be among what gets restarted."""
        task = asyncio.create_task(self._save(prepare), name="argentic-edge-config-save")
        _saving.add(task)
        task.add_done_callback(_saving.discard)
        return await asyncio.shield(task)

    async def _save(self, prepare: Callable[[], tuple[str, EdgeConfig]]) -> dict[str, Any]:
        lock = _locks.setdefault(self.appliance, asyncio.Lock())
        async with lock:
            text, config = prepare()
            path = self.path
            target = Path(os.path.realpath(path))  # a symlinked file is written through the link
            previous_bytes = target.read_bytes() if target.exists() else None
            previous = self.appliance.config
            try:
                restarted = await self.appliance.apply(config)
            except Exception as exc:
                raise ApplyError(
                    f"the configuration is valid but could not be applied: {exc}. "
                    "The previous configuration is still running."
                ) from None
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, _write, target, text, previous_bytes
                )
            except OSError as exc:
                await self.appliance.apply(previous)
                raise ApplyError(
                    f"could not save {path}: {describe_os_error(exc)}. "
                    "The previous configuration is running again."
                ) from None
            if self.appliance.config_path is None:
                self.appliance.config_path = str(path)
            backup = str(_backup(target)) if previous_bytes is not None else None
            return {"applied": True, "restarted": restarted, "path": str(path), "backup": backup}


def _backup(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _write(path: Path, text: str, previous: bytes | None) -> None:
    if previous is not None:
        atomic_write(_backup(path), previous, mode=0o600)
    atomic_write(path, text, mode=0o600)
