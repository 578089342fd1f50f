"""Diagnoses that name the cause: what the inspector saw go wrong, in words a user can act on.

Each diagnosis is derived from the tables (tools, tasks, clients) when asked, plus a small log of
messages that were not Argentic envelopes (counted by reason; the last ``MAX_EXAMPLES`` kept).
Claims about Argentic's own behaviour are only those a test checks against the real package
(tests/test_inspector_argentic.py).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from argentic_edge.inspector.tasks import TaskBook
from argentic_edge.inspector.tools import ToolRegistry

CONFIRM_WAIT = 10.0  # seconds a REGISTER_TOOL may wait for its TOOL_REGISTERED
MAX_EXAMPLES = 20
MAX_LISTED = 50  # diagnoses of one kind listed; the rest are counted
SPLIT_TOPIC = "topic with a space"
ZMQ_DRIVER_REFUSES_SPACES = (
    "Argentic 0.16's ZeroMQ driver refuses to publish to a topic with a space (ValueError), "
    "so this sender is not an Argentic ZeroMQ client, or builds frames itself"
)
RESULTS_ARE_TASKS = (
    "Argentic 0.16 sends results and errors with type TASK and a status field (not "
    "TASK_RESULT/TASK_ERROR); the inspector pairs both forms"
)


@dataclass
class InvalidLog:
    """Messages that were not Argentic envelopes: counted by reason, the last few kept."""

    reasons: Counter[str] = field(default_factory=Counter)
    examples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EXAMPLES))
    total: int = 0

    def add(self, topic: str, reason: str, payload: bytes, now: float) -> None:
        self.total += 1
        self.reasons[reason] += 1
        self.examples.append(
            {
                "topic": topic,
                "reason": reason,
                "time": now,
                "preview": payload[:120].decode("utf-8", "replace"),
            }
        )


def _diagnosis(kind: str, subject: str, cause: str, **detail: Any) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "cause": cause, **detail}


def _unconfirmed(tools: ToolRegistry, now: float) -> list[dict[str, Any]]:
    found = []
    for tool in tools.tools.values():
        requested = tool.requested
        if tool.state == "refused":
            found.append(
                _diagnosis(
                    "registration_refused",
                    tool.name,
                    f"the agent answered TOOL_REGISTRATION_ERROR: {tool.error or 'no reason'}",
                )
            )
        elif tool.state == "requested" and requested is not None and now - requested > CONFIRM_WAIT:
            who = ", ".join(tool.providers) or "an unnamed client"
            found.append(
                _diagnosis(
                    "registration_unconfirmed",
                    tool.name,
                    f"{who} sent REGISTER_TOOL on {tool.registrations[-1].topic} "
                    f"{now - requested:.0f} s ago and no TOOL_REGISTERED came back: no agent "
                    "(tool manager) is listening on that topic, or it answers on a status topic "
                    "the tool does not read",
                    since=requested,
                )
            )
    return found


def _unanswered(tasks: TaskBook, now: float) -> list[dict[str, Any]]:
    found = []
    for record in tasks.unanswered(now):
        assert record.sent is not None
        limit = (
            f"its own timeout of {record.timeout_seconds:g} s"
            if record.timeout_seconds is not None
            else "the inspector's 60 s"
        )
        found.append(
            _diagnosis(
                "task_unanswered",
                record.task_id,
                f"{record.caller or 'a caller'} called {record.tool_name or 'a tool'} "
                f"{now - record.sent:.0f} s ago (past {limit}) and no TASK answer with this "
                "task_id came: the tool is not subscribed to its call topic, stopped, or "
                "answers elsewhere",
                tool=record.tool_name,
                since=record.sent,
            )
        )
    return found


def _stopped(tools: ToolRegistry, now: float) -> list[dict[str, Any]]:
    return [
        _diagnosis(
            "heartbeat_stopped",
            client.client_id,
            f"heartbeats on _ping/{client.client_id} came every {client.usual_interval():.1f} s "
            f"and stopped {now - client.last_seen:.0f} s ago: the client exited, hangs or lost "
            "the bus",
            since=client.last_seen,
        )
        for client in tools.clients.values()
        if client.stopped(now)
    ]


def _invalid(invalid: InvalidLog) -> list[dict[str, Any]]:
    found = []
    for reason, count in invalid.reasons.most_common():
        example = next((e for e in reversed(invalid.examples) if e["reason"] == reason), None)
        kind = "topic_with_space" if "space" in reason else "invalid_envelope"
        cause = f"{count} message(s): {reason}"
        if kind == "topic_with_space":
            cause += f"; {ZMQ_DRIVER_REFUSES_SPACES}"
        found.append(
            _diagnosis(
                kind, example["topic"] if example else "?", cause, count=count, example=example
            )
        )
    return found


def diagnose(
    tools: ToolRegistry, tasks: TaskBook, invalid: InvalidLog, now: float
) -> dict[str, Any]:
    """Every current diagnosis, grouped by what it is about, at most MAX_LISTED per kind."""
    found = _unconfirmed(tools, now) + _unanswered(tasks, now) + _stopped(tools, now)
    found += _invalid(invalid)
    counts = Counter(d["kind"] for d in found)
    listed: Counter[str] = Counter()
    shown = []
    for diagnosis in found:
        listed[diagnosis["kind"]] += 1
        if listed[diagnosis["kind"]] <= MAX_LISTED:
            shown.append(diagnosis)
    return {"diagnoses": shown, "counts": dict(counts), "notes": [RESULTS_ARE_TASKS]}
