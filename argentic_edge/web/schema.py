"""The configuration schema as the editor needs it: which raw keys are secrets, and the form.

Both read the dataclasses of ``argentic_edge.config`` (they are the schema), so a new key appears in
the form and a new Secret field is masked without touching this module. Keys outside the schema
(Argentic's own ``llm:`` or ``tools:`` sections the appliance keeps as written) are judged by name:
anything called like a password, token, secret or API key is masked too.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from argentic_edge.config import (
    EdgeConfig,
    MqttConfig,
    Secret,
    default_data_dir,
    default_node_name,
    to_dict,
)

Path = tuple[Any, ...]
SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
)


def unwrap(hint: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


@functools.cache
def _lookup(cls: type) -> dict[str, tuple[str, Any]]:
    """Raw key (name or alias) -> (field name, type) for one schema dataclass."""
    hints = typing.get_type_hints(cls)
    table: dict[str, tuple[str, Any]] = {}
    for f in dataclasses.fields(cls):
        for key in (f.name, *f.metadata.get("aliases", ())):
            table[key] = (f.name, unwrap(hints[f.name]))
    return table


def is_uplink(document: Any) -> bool:
    """A plain Argentic config whose ``messaging:`` is MQTT: that block is the bridge's uplink."""
    messaging = document.get("messaging") if isinstance(document, Mapping) else None
    return isinstance(messaging, Mapping) and messaging.get("protocol") == "mqtt"


def _named_secret(key: Any) -> bool:
    return isinstance(key, str) and any(word in key.lower() for word in SECRET_WORDS)


def is_secret(path: Path, document: Any) -> bool:
    """Whether the raw value at ``path`` (keys and list indexes) is, or lies inside, a secret."""
    hint: Any = EdgeConfig
    for index, key in enumerate(path):
        if index == 0 and key == "messaging" and is_uplink(document):
            hint = MqttConfig
            continue
        origin = typing.get_origin(hint)
        if (
            isinstance(hint, type)
            and dataclasses.is_dataclass(hint)
            and isinstance(key, str)
            and key in _lookup(hint)
        ):
            hint = _lookup(hint)[key][1]
        elif origin is tuple and isinstance(key, int):
            hint = unwrap(typing.get_args(hint)[0])
        else:
            return any(_named_secret(k) for k in path[index:])
        if hint is Secret:
            return True
    return False


def dotted(path: Path) -> str:
    """The path as ConfigError problems spell it: ``bridge.routes[0].topic``."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


# --- the form ----------------------------------------------------------------------------------


def _kind(hint: Any) -> tuple[str, list[Any] | None]:
    origin = typing.get_origin(hint)
    if hint is Secret:
        return "secret", None
    if origin is Literal:
        return "choice", list(typing.get_args(hint))
    if hint is bool:
        return "bool", None
    if hint in (int, float):
        return hint.__name__, None
    if hint is str:
        return "text", None
    if origin is tuple and typing.get_args(hint)[0] is str:
        return "list", None
    return "yaml", None  # lists of routes, Argentic's topics mapping: edited as YAML


def _default(cls: type, name: str) -> Any:
    if cls is EdgeConfig and name == "node_name":
        return default_node_name()
    if cls is EdgeConfig and name == "data_dir":
        return str(default_data_dir())
    return to_dict(getattr(cls(), name))


def _present_key(raw: Any, cls: type, name: str) -> str:
    """The key the document already uses for a field (an alias such as ``url`` counts)."""
    if isinstance(raw, Mapping):
        for key in raw:
            if _lookup(cls).get(key, ("",))[0] == name:
                return str(key)
    return name


def form_fields(masked: Any) -> list[dict[str, Any]]:
    """Every field of the schema with the document's (masked) value, in schema order.

    ``keys`` is where the value lives in the raw document (aliases and the uplink form respected);
    validation problems name that path, so the page can show them next to the field.
    """
    document = masked if isinstance(masked, Mapping) else {}
    uplink = is_uplink(document)
    fields: list[dict[str, Any]] = []

    def walk(cls: type, canonical: Path, keys: Path, raw: Any) -> None:
        for f in dataclasses.fields(cls):
            if uplink and canonical == () and f.name == "messaging":
                continue  # the messaging block is the uplink: the bus keeps its defaults
            hint = _lookup(cls)[f.name][1]
            key = _present_key(raw, cls, f.name)
            where, value = keys + (key,), raw.get(key) if isinstance(raw, Mapping) else None
            if uplink and canonical == ("bridge",) and f.name == "mqtt":
                where, value = ("messaging",), document.get("messaging")
            if isinstance(hint, type) and dataclasses.is_dataclass(hint):
                walk(hint, canonical + (f.name,), where, value)
                continue
            kind, options = _kind(hint)
            fields.append(
                {
                    "path": ".".join(canonical + (f.name,)),
                    "keys": list(where),
                    "where": dotted(where),
                    "section": ".".join(canonical) or "general",
                    "kind": kind,
                    "options": options,
                    "default": _default(cls, f.name),
                    "doc": f.metadata.get("doc", ""),
                    "value": value,
                }
            )

    walk(EdgeConfig, (), (), document)
    return fields
