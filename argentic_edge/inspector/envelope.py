"""Decoding one bus message as an Argentic envelope: its type, source and ids, or why it is not one.

Argentic's messages are pydantic ``BaseMessage`` objects serialised as one JSON object with a
string ``type`` and the optional ``source``, ``timestamp``, ``message_id``; tool messages add
``task_id``, ``tool_id``, ``tool_name``. Argentic 0.16's ``TaskResultMessage`` and
``TaskErrorMessage`` inherit ``TaskMessage``'s default ``type`` and go out as ``"TASK"`` with a
``status`` field (``success``, ``error``, ``failed``, ``cancelled``, ``timeout``); a tests with the
real package checks this. So a ``TASK`` carrying a ``status`` is an answer, told apart here once:
``kind`` is ``task``, ``result`` or ``error`` for tool traffic, else the type itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_ID = 200  # longer ids are cut to this many characters in what the inspector keeps
ERROR_STATUSES = frozenset({"error", "failed", "cancelled", "timeout"})
RESULT_TYPES = frozenset({"TASK_RESULT"})
ERROR_TYPES = frozenset({"TASK_ERROR"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the inspector reads of one message. ``problem`` is set (and the rest empty) when the
    payload is not an Argentic envelope; ``message`` is the parsed object when it is one."""

    kind: str | None = None
    type: str | None = None
    source: str | None = None
    message_id: str | None = None
    task_id: str | None = None
    tool_id: str | None = None
    tool_name: str | None = None
    status: str | None = None
    timestamp: float | None = None
    problem: str | None = None
    message: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The decoded fields for the API (the parsed message is left out: the raw payload is
        there already)."""
        fields = {
            "kind": self.kind,
            "type": self.type,
            "source": self.source,
            "message_id": self.message_id,
            "task_id": self.task_id,
            "tool_id": self.tool_id,
            "tool_name": self.tool_name,
            "status": self.status,
            "timestamp": self.timestamp,
            "problem": self.problem,
        }
        return {key: value for key, value in fields.items() if value is not None}


def _text(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if isinstance(value, str) and value:
        return value[:MAX_ID]
    return None


def _looks_split(payload: bytes) -> bool:
    """A payload such as ``b'topic {"type": ...}'``: the sender's topic had a space, and the
    frame's first space ended the topic early."""
    head, sep, rest = payload.partition(b" ")
    return bool(sep) and b"{" not in head and rest.lstrip()[:1] == b"{"


def not_json_reason(payload: bytes) -> str:
    if _looks_split(payload):
        return (
            "not JSON: the text before the JSON looks like the rest of a topic with a space "
            "(the bus frame is '<topic> <json>', so the topic ended at its first space)"
        )
    return "not JSON"


def decode(payload: bytes) -> Envelope:
    """The envelope of ``payload``; never raises."""
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Envelope(problem=not_json_reason(payload))
    if not isinstance(message, dict):
        return Envelope(problem=f"JSON {type(message).__name__}, not an object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return Envelope(problem="a JSON object without a string 'type'")
    status = _text(message, "status")
    timestamp = message.get("timestamp")
    return Envelope(
        kind=_kind(kind, status),
        type=kind[:MAX_ID],
        source=_text(message, "source"),
        message_id=_text(message, "message_id"),
        task_id=_text(message, "task_id"),
        tool_id=_text(message, "tool_id"),
        tool_name=_text(message, "tool_name"),
        status=status,
        timestamp=float(timestamp)
        if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool)
        else None,
        message=message,
    )


def _kind(kind: str, status: str | None) -> str:
    if kind in RESULT_TYPES:
        return "result"
    if kind in ERROR_TYPES:
        return "error"
    if kind == "TASK":
        if status is None:
            return "task"
        return "error" if status in ERROR_STATUSES else "result"
    return kind
