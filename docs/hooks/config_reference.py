"""mkdocs hook: the configuration reference, rendered from the schema itself.

The frozen dataclasses of ``argentic_edge.config`` are the schema ``check-config`` and the web form
read; this hook walks the same dataclasses, so every key, type, default, alias and secret shown in
the manual is the one the code enforces. The words come from each field's ``doc`` metadata and from
``docs/reference/descriptions.yaml``; the build fails when a key has neither, or when that file
describes a key the schema does not have, so the manual cannot drift from the code.

A page asks for the reference with the line ``<!-- generated: config-reference -->`` and for the
QoS/retain category table with ``<!-- generated: topic-categories -->``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from mkdocs.exceptions import PluginError

from argentic_edge import config as schema
from argentic_edge.topics import CATEGORIES

DESCRIPTIONS = Path(__file__).resolve().parent.parent / "reference" / "descriptions.yaml"
REFERENCE_MARK = "<!-- generated: config-reference -->"
CATEGORIES_MARK = "<!-- generated: topic-categories -->"
TOP_INTRO = "Keys at the top of the file, beside the sections."
# Values every range or format check refuses: what check-config answers for them is shown as the
# rule (the text comes from the check itself, so it cannot disagree with it).
PROBES: dict[Any, tuple[Any, ...]] = {
    int: (-(10**12),),
    float: (-(10**12),),
    str: ("..", "#/+x"),
    tuple: (("..",),),
}


@dataclasses.dataclass(frozen=True)
class Key:
    """One configuration key as the reference shows it."""

    path: str  # dotted, list items as ``[]``: ``bridge.routes[].topic``
    hint: Any  # the field's type, ``X | None`` unwrapped
    optional: bool  # ``None`` (YAML ``null``) is allowed
    default: Any
    doc: str  # the field's ``doc`` metadata
    aliases: tuple[str, ...]
    check: Any


@dataclasses.dataclass(frozen=True)
class Section:
    """A dataclass of the schema: a mapping in the YAML file."""

    path: str
    cls: type
    keys: tuple[Key, ...]


def _unwrap(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return options[0], type(None) in args
    return hint, False


def _item_class(hint: Any) -> type | None:
    """The dataclass of a ``tuple[SomeDataclass, ...]`` (a list of mappings), else None."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            return typing.cast(type, item)
    return None


def sections(cls: type = schema.EdgeConfig, path: str = "") -> Iterator[Section]:
    """Every section of the schema, parents before their children, in schema order."""
    hints = typing.get_type_hints(cls)
    instance = cls()
    keys, children = [], []
    for f in dataclasses.fields(cls):
        if f.metadata.get("derived"):
            continue  # filled in when the file is read, never written
        hint, optional = _unwrap(hints[f.name])
        key_path = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(hint):
            children.append((typing.cast(type, hint), key_path))
        elif (item := _item_class(hint)) is not None:
            children.append((item, f"{key_path}[]"))
        keys.append(
            Key(
                key_path,
                hint,
                optional,
                getattr(instance, f.name),
                f.metadata.get("doc", ""),
                tuple(f.metadata.get("aliases", ())),
                f.metadata.get("check"),
            )
        )
    yield Section(path, cls, tuple(keys))
    for child, child_path in children:
        yield from sections(child, child_path)


def type_text(key: Key) -> str:
    hint = key.hint
    origin = typing.get_origin(hint)
    if hint is schema.Secret:
        text = "string, **secret**"
    elif origin is Literal:
        text = "one of " + ", ".join(f"`{_yaml(arg)}`" for arg in typing.get_args(hint))
    elif dataclasses.is_dataclass(hint):
        text = f"section ([`{key.path}`](#{anchor(key.path)}))"
    elif _item_class(hint) is not None:
        text = f"list of mappings ([`{key.path}[]`](#{anchor(key.path + '[]')}))"
    elif origin is tuple:
        text = f"list of {type_text(dataclasses.replace(key, hint=typing.get_args(hint)[0]))}s"
    elif hint is Mapping or origin is Mapping:
        text = "mapping"
    elif hint is Any:  # an uplink's protocol keys, written beside the common ones
        text = "the protocol's keys"
    else:
        text = {bool: "boolean", int: "whole number", float: "number", str: "string"}.get(hint)
        if text is None:
            raise PluginError(
                f"config reference: {key.path} has a type the reference cannot "
                f"name: {hint!r}; teach docs/hooks/config_reference.py about it"
            )
    return text + (" or `null`" if key.optional else "")


def _yaml(value: Any) -> str:
    """A scalar as it is written in the YAML file (floats to three places)."""
    if isinstance(value, float) and value != round(value, 3):
        return f"{value:.3f}"
    return str(yaml.safe_dump(value, default_flow_style=True)).removesuffix("...\n").strip()


def default_text(key: Key) -> str:
    if key.default == "" and key.doc.startswith("default:"):
        return key.doc.removeprefix("default:").strip()  # filled in when the file is read
    if dataclasses.is_dataclass(key.hint):
        return "" if key.default is not None else "`null`"
    plain = schema.to_dict(key.default)
    if isinstance(plain, list) and plain and isinstance(plain[0], Mapping):
        return "see below"
    return f"`{_yaml(plain)}`"


def rule_text(key: Key) -> str:
    """What check-config says for a value the field's check refuses."""
    if key.check is None:
        return ""
    base = typing.get_origin(key.hint) or key.hint
    for probe in PROBES.get(base, ()):
        try:
            message = key.check(probe)
        except (TypeError, ValueError):
            continue
        if message:
            shown = probe[0] if isinstance(probe, tuple) else probe
            return (
                f"Checked: {message}."
                if message.startswith("expected")
                else f"Checked: for `{shown}`, check-config says “{message}”."
            )
    return "Checked by check-config."


def anchor(path: str) -> str:
    return "cfg-" + path.replace(".", "-").replace("[]", "-item")


def load_descriptions(known: set[str]) -> dict[str, str]:
    try:
        raw = yaml.safe_load(DESCRIPTIONS.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PluginError(f"config reference: cannot read {DESCRIPTIONS}: {exc}") from None
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise PluginError(f"config reference: {DESCRIPTIONS} must map key paths to strings")
    stray = sorted(set(raw) - known)
    if stray:
        raise PluginError(
            f"config reference: {DESCRIPTIONS.name} describes keys the schema "
            f"(argentic_edge/config.py) does not have: {', '.join(stray)}"
        )
    return {str(k): " ".join(str(v).split()) for k, v in raw.items()}


def protocol_sections() -> Iterator[Section]:
    """Each uplink protocol's own keys (``uplinks[].link``) but MQTT's, which are bridge.mqtt's:
    written in the uplink's mapping, documented under ``uplinks[].<protocol>``."""
    for name, cls in schema.UPLINK_PROTOCOLS.items():
        if cls is not schema.MqttConfig:
            yield from sections(cls, f"uplinks[].{name}")


def render_reference() -> str:
    every = [*sections(), *protocol_sections()]
    known = {s.path for s in every if s.path} | {k.path for s in every for k in s.keys}
    descriptions = load_descriptions(known)
    first_of: dict[type, str] = {}  # a section class -> where it is described first
    missing = []
    out: list[str] = []
    for section in every:
        title = f"`{section.path}`" if section.path else "Top level"
        first = first_of.setdefault(section.cls, section.path)
        if first != section.path:  # the same keys again (uplinks[].routes[] as bridge.routes[])
            descriptions = _borrowed(descriptions, section, first)
        intro = descriptions.get(section.path, "") if section.path else TOP_INTRO
        if not intro:
            missing.append(section.path)
        out += [f"### {title} {{#{anchor(section.path or 'top')}}}", "", intro, ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        blocks = []
        for key in section.keys:
            doc = "" if key.doc.startswith("default:") else key.doc  # shown as the default
            text = " ".join(
                filter(
                    None, [doc and doc[0].upper() + doc[1:] + ".", descriptions.get(key.path, "")]
                )
            )
            if not text:
                missing.append(key.path)
            if key.aliases:
                text += " Also spelled " + ", ".join(f"`{a}`" for a in key.aliases) + "."
            text = " ".join(filter(None, [text, rule_text(key)]))
            name = key.path.rsplit(".", 1)[-1]
            out.append(
                f"| `{name}` | {type_text(key)} | {default_text(key)} | "
                f"{text.replace('|', chr(92) + '|')} |"
            )
            if default_text(key) == "see below":
                blocks += [
                    "",
                    f"Default of `{name}`:",
                    "",
                    "```yaml",
                    yaml.safe_dump(
                        {name: schema.to_dict(key.default)},
                        sort_keys=False,
                        default_flow_style=None,
                        width=200,
                    ).rstrip(),
                    "```",
                ]
        out += blocks + [""]
        if section.path == "messaging":
            ignored = ", ".join(f"`{k}`" for k in sorted(schema.ARGENTIC_CLIENT_KEYS))
            out += [f"Argentic's agent-side keys {ignored} are accepted here and ignored.", ""]
    if missing:
        raise PluginError(
            "config reference: no description for "
            f"{', '.join(missing)}: add a `doc=` to the field in "
            f"argentic_edge/config.py or an entry to docs/reference/{DESCRIPTIONS.name}"
        )
    sections_ignored = ", ".join(f"`{name}:`" for name in sorted(schema.ARGENTIC_SECTIONS))
    out += [
        f"Top-level sections of a whole Argentic `config.yaml` that are not the appliance's "
        f"({sections_ignored}) are accepted and left alone.",
        "",
    ]
    return "\n".join(out)


def _borrowed(descriptions: dict[str, str], section: Section, first: str) -> dict[str, str]:
    """Descriptions for the keys of ``section`` taken from where its class is described first,
    unless it has its own."""
    borrowed = dict(descriptions)
    for key in section.keys:
        twin = first + key.path[len(section.path) :]
        if key.path not in borrowed and twin in descriptions:
            borrowed[key.path] = descriptions[twin]
    if section.path not in borrowed and first in descriptions:
        borrowed[section.path] = f"The same keys as [`{first}`](#{anchor(first)})."
    return borrowed


def render_categories() -> str:
    qos, retain = schema.QosLevels(), schema.RetainMessages()
    rows = ["| category | topics | default QoS | default retain |", "|---|---|---|---|"]
    for name, patterns in CATEGORIES.items():
        topics = ", ".join(f"`{p}`" for p in patterns)
        rows.append(
            f"| `{name}` | {topics} | {getattr(qos, name)} | {_yaml(getattr(retain, name))} |"
        )
    rows.append("| anything else | | 0 | false |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if REFERENCE_MARK in markdown:
        markdown = markdown.replace(REFERENCE_MARK, render_reference())
    if CATEGORIES_MARK in markdown:
        markdown = markdown.replace(CATEGORIES_MARK, render_categories())
    return markdown
