"""Tool calls paired with their answers by ``task_id``: who called which tool, when it was
answered, how long it took, which ones hang, time out or were cancelled.

Argentic's tool traffic: a ``TASK`` on ``agent/tools/call/<tool_id>``, answered on
``agent/tools/response/<tool_id>`` by a ``TASK`` with a ``status`` (Argentic 0.16) or a
``TASK_RESULT``/``TASK_ERROR`` (the names the guide uses), and ``TOOL_CANCEL`` on
``agent/tools/cancel/<tool_id>``. Pairing reads the envelope only, so any topic layout works.

Caps: ``MAX_TASKS`` calls kept (the oldest forgotten first, counted); per tool the last
``LATENCY_SAMPLES`` latencies for the percentiles, for at most ``MAX_TOOLS`` tools.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from argentic_edge.inspector.envelope import Envelope

MAX_TASKS = 2_000
MAX_TOOLS = 512
LATENCY_SAMPLES = 500
UNANSWERED_AFTER = 60.0  # seconds without an answer (or past its own timeout_seconds): a diagnosis
MAX_ERROR_TEXT = 500


@dataclass(slots=True)
class TaskRecord:
    """One call. ``sent`` is None for an answer whose call the inspector did not see."""

    task_id: str
    tool_name: str | None = None
    tool_id: str | None = None
    caller: str | None = None
    responder: str | None = None
    sent: float | None = None
    answered: float | None = None
    outcome: str | None = None  # success | error | failed | cancelled | timeout | ...
    error: str | None = None
    timeout_seconds: float | None = None
    cancelled: float | None = None
    cancel_reason: str | None = None
    duplicates: int = 0  # the same task_id sent again

    def state(self, now: float) -> str:
        if self.answered is not None:
            return "answered" if self.outcome == "success" else (self.outcome or "answered")
        if self.cancelled is not None:
            return "cancelled"
        if self.sent is None:
            return "unknown"
        if self.timeout_seconds is not None and now - self.sent > self.timeout_seconds:
            return "timed out"
        return "pending"

    def to_dict(self, now: float) -> dict[str, Any]:
        latency = (
            self.answered - self.sent
            if self.answered is not None and self.sent is not None
            else None
        )
        return {
            "task_id": self.task_id,
            "tool": self.tool_name,
            "tool_id": self.tool_id,
            "caller": self.caller,
            "responder": self.responder,
            "sent": self.sent,
            "answered": self.answered,
            "latency": None if latency is None else round(latency, 6),
            "age": None if self.sent is None else round(now - self.sent, 3),
            "state": self.state(now),
            "outcome": self.outcome,
            "error": self.error,
            "timeout_seconds": self.timeout_seconds,
            "cancelled": self.cancelled,
            "cancel_reason": self.cancel_reason,
            "duplicates": self.duplicates,
        }


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def _seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _cut(value: Any) -> str | None:
    return value[:MAX_ERROR_TEXT] if isinstance(value, str) else None


@dataclass
class TaskBook:
    """The bounded table of calls and the latency samples per tool. Pure: the caller passes the
    clock."""

    max_tasks: int = MAX_TASKS
    tasks: OrderedDict[str, TaskRecord] = field(default_factory=OrderedDict)
    latencies: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    forgotten: int = 0
    answers_without_call: int = 0

    def add(self, envelope: Envelope, now: float) -> None:
        kind, task_id = envelope.kind, envelope.task_id
        if task_id is None or kind not in ("task", "result", "error", "TOOL_CANCEL"):
            return
        message = envelope.message or {}
        record = self.tasks.get(task_id)
        if kind == "task":
            if record is None:
                record = self._new(task_id)
            elif record.sent is not None:
                record.duplicates += 1
                return
            record.sent = now
            record.caller = envelope.source
            record.tool_id = envelope.tool_id or record.tool_id
            record.tool_name = envelope.tool_name or record.tool_name
            record.timeout_seconds = _seconds(message.get("timeout_seconds"))
            return
        if record is None:
            record = self._new(task_id)
        if kind == "TOOL_CANCEL":
            record.cancelled = now
            record.cancel_reason = _cut(message.get("reason"))
            record.tool_id = record.tool_id or envelope.tool_id
            return
        if record.answered is not None:
            record.duplicates += 1
            return
        if record.sent is None:
            self.answers_without_call += 1
        record.answered = now
        record.responder = envelope.source
        record.outcome = envelope.status or ("success" if kind == "result" else "error")
        record.error = _cut(message.get("error"))
        record.tool_id = record.tool_id or envelope.tool_id
        record.tool_name = record.tool_name or envelope.tool_name
        if record.sent is not None and record.tool_name is not None:
            self._sample(record.tool_name, now - record.sent)

    def _new(self, task_id: str) -> TaskRecord:
        record = self.tasks[task_id] = TaskRecord(task_id)
        while len(self.tasks) > self.max_tasks:
            self.tasks.popitem(last=False)
            self.forgotten += 1
        return record

    def _sample(self, tool: str, latency: float) -> None:
        samples = self.latencies.get(tool)
        if samples is None:
            samples = self.latencies[tool] = deque(maxlen=LATENCY_SAMPLES)
            while len(self.latencies) > MAX_TOOLS:
                self.latencies.popitem(last=False)
        else:
            self.latencies.move_to_end(tool)
        samples.append(latency)

    def per_tool(self) -> list[dict[str, Any]]:
        rows = []
        for tool, samples in self.latencies.items():
            ordered = sorted(samples)
            rows.append(
                {
                    "tool": tool,
                    "samples": len(ordered),
                    "p50": round(percentile(ordered, 0.50), 6),
                    "p90": round(percentile(ordered, 0.90), 6),
                    "p99": round(percentile(ordered, 0.99), 6),
                    "max": round(ordered[-1], 6),
                }
            )
        return sorted(rows, key=lambda row: row["tool"])

    def unanswered(self, now: float) -> list[TaskRecord]:
        """Calls with no answer and no cancel, past their own timeout or UNANSWERED_AFTER."""
        return [
            record
            for record in self.tasks.values()
            if record.sent is not None
            and record.answered is None
            and record.cancelled is None
            and now - record.sent
            > min(record.timeout_seconds or UNANSWERED_AFTER, UNANSWERED_AFTER)
        ]

    def snapshot(self, now: float, limit: int) -> dict[str, Any]:
        """Newest first."""
        records = list(self.tasks.values())[-limit:]
        records.reverse()
        states: dict[str, int] = {}
        for record in self.tasks.values():
            state = record.state(now)
            states[state] = states.get(state, 0) + 1
        return {
            "tasks": [record.to_dict(now) for record in records],
            "total": len(self.tasks),
            "states": states,
            "per_tool": self.per_tool(),
            "max_tasks": self.max_tasks,
            "forgotten": self.forgotten,
            "answers_without_call": self.answers_without_call,
        }
