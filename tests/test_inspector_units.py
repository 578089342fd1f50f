"""The inspector's tables on a clock the test holds: envelopes, topic caps, task pairing with
exact latencies and percentiles, tool duplicates and staleness, the charts' rates, the recording
format byte for byte."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from argentic_edge.inspector import topictree
from argentic_edge.inspector.envelope import decode
from argentic_edge.inspector.history import History, uplink_sections
from argentic_edge.inspector.recording import RecordingError, line, load, read
from argentic_edge.inspector.tasks import TaskBook, percentile
from argentic_edge.inspector.tools import ToolRegistry
from argentic_edge.inspector.topictree import TopicTable
from argentic_edge.topics import TopicFilter


def envelope(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"hello", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"source": "x"}', "a JSON object without a string 'type'"),
        (b'topic {"type": "INFO"}', "looks like the rest of a topic with a space"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_what_is_not_an_envelope_says_why(payload: bytes, reason: str) -> None:
    problem = decode(payload).problem
    assert problem is not None and reason in problem


def test_a_task_with_a_status_is_an_answer() -> None:
    assert decode(envelope(type="TASK", task_id="t")).kind == "task"
    assert decode(envelope(type="TASK", task_id="t", status="success")).kind == "result"
    assert decode(envelope(type="TASK", task_id="t", status="failed")).kind == "error"
    assert decode(envelope(type="TASK_RESULT", task_id="t")).kind == "result"
    assert decode(envelope(type="TASK_ERROR", task_id="t")).kind == "error"
    info = decode(envelope(type="INFO", source="a", message_id="m", timestamp=3))
    assert info.summary() == {
        "kind": "INFO",
        "type": "INFO",
        "source": "a",
        "message_id": "m",
        "timestamp": 3.0,
    }


def test_the_topic_table_is_capped_and_counts_what_it_forgot() -> None:
    table = TopicTable(max_topics=3)
    empty = decode(b"{}")
    for index in range(5):
        table.add(f"t/{index}", b"x" * index, empty, float(index))
    table.add("t/3", b"again", empty, 10.0)
    rows = table.rows(None, 10.0, 100)
    assert [r["topic"] for r in rows["topics"]] == ["t/2", "t/3", "t/4"]
    assert (rows["evicted"], rows["kept"], rows["total"]) == (2, 3, 3)
    assert table.rows(TopicFilter("t/+"), 10.0, 1)["total"] == 3
    assert len(table.rows(TopicFilter("t/+"), 10.0, 1)["topics"]) == 1
    detail = table.detail("t/3", 10.0)
    assert detail is not None and (detail["count"], detail["payload"]) == (2, "again")


def test_a_long_last_message_is_cut_and_marked() -> None:
    table = TopicTable()
    big = b"y" * (topictree.MAX_LAST_PAYLOAD + 10)
    table.add("big", big, decode(big), 1.0)
    detail = table.detail("big", 1.0)
    assert detail is not None
    assert (detail["payload_size"], detail["truncated"]) == (len(big), True)
    assert len(detail["payload"]) == topictree.MAX_LAST_PAYLOAD


def test_a_topic_rate_is_its_count_over_the_last_window() -> None:
    table = TopicTable()
    empty = decode(b"{}")
    for tenth in range(101):  # 10 a second for 10 s
        table.add("a", b"", empty, 100.0 + tenth / 10)
    assert table.rows(None, 110.0, 1)["topics"][0]["rate"] == pytest.approx(10.0, rel=0.02)
    assert table.rows(None, 200.0, 1)["topics"][0]["rate"] == 0.0  # quiet since


def test_tasks_pair_by_id_with_exact_latencies_and_percentiles() -> None:
    book = TaskBook()
    latencies = [0.1, 0.2, 0.3, 0.4, 1.0]
    for index, latency in enumerate(latencies):
        task_id = f"t{index}"
        book.add(
            decode(envelope(type="TASK", task_id=task_id, tool_name="calc", source="me")), 10.0
        )
        book.add(
            decode(envelope(type="TASK", task_id=task_id, status="success", source="calc")),
            10.0 + latency,
        )
    book.add(decode(envelope(type="TASK", task_id="x", tool_name="calc", timeout_seconds=2)), 10.0)
    book.add(decode(envelope(type="TASK_RESULT", task_id="nocall")), 11.0)
    snapshot = book.snapshot(13.0, 100)
    by_id = {t["task_id"]: t for t in snapshot["tasks"]}
    assert [by_id[f"t{i}"]["latency"] for i in range(5)] == pytest.approx(latencies)
    assert by_id["x"]["state"] == "timed out"
    assert by_id["nocall"]["state"] == "answered" and by_id["nocall"]["sent"] is None
    assert snapshot["answers_without_call"] == 1
    assert snapshot["per_tool"] == [
        {"tool": "calc", "samples": 5, "p50": 0.3, "p90": 1.0, "p99": 1.0, "max": 1.0}
    ]
    assert [r.task_id for r in book.unanswered(13.0)] == ["x"]


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert (percentile(ordered, 0.5), percentile(ordered, 0.9), percentile(ordered, 0.99)) == (
        50.0,
        90.0,
        99.0,
    )
    assert percentile([7.0], 0.99) == 7.0


def test_the_task_book_is_capped() -> None:
    book = TaskBook(max_tasks=10)
    for index in range(25):
        book.add(decode(envelope(type="TASK", task_id=str(index))), float(index))
    assert len(book.tasks) == 10 and book.forgotten == 15
    assert next(iter(book.tasks)) == "15"


def test_a_duplicate_registration_and_a_stale_tool() -> None:
    registry = ToolRegistry()
    for provider in ("a", "b"):
        registry.add(
            "agent/tools/register",
            decode(envelope(type="REGISTER_TOOL", tool_name="dup", source=provider)),
            1.0,
        )
    for second in range(5):
        registry.add("_ping/a", decode(envelope(type="INFO")), 1.0 + second)
    row = registry.snapshot(6.0)["tools"][0]
    assert (row["duplicate"], row["providers"], row["stale"], row["spec"]) == (
        True,
        ["a", "b"],
        None,
        "legacy",
    )
    # b never beats, a stopped: stale only when every provider that beats has stopped
    assert registry.snapshot(100.0)["tools"][0]["stale"] == "its provider's heartbeats stopped"
    registry.add(
        "agent/status/info",
        decode(envelope(type="TOOL_REGISTERED", tool_name="dup", tool_id="i1", source="agent")),
        101.0,
    )
    registry.add(
        "agent/tools/register", decode(envelope(type="UNREGISTER_TOOL", tool_id="i1")), 102.0
    )
    assert registry.snapshot(103.0)["tools"][0]["state"] == "unregistered"


def test_history_rates_and_uplinks_from_either_status_shape() -> None:
    history = History()

    def status(messages: int, to: int) -> dict[str, object]:
        return {
            "bus": {
                "counters": {
                    "frontend": {"messages_in": messages},
                    "backend": {"messages_out": 2 * messages},
                }
            },
            "bridge": {
                "enabled": True,
                "routes": [
                    {"out": {"messages": to, "dropped": {"x": to // 10}}, "in": {"messages": 1}}
                ],
            },
        }

    history.add(status(0, 0), 0.0)
    history.add(status(100, 50), 10.0)
    assert history.rates() == [
        {
            "time": 10.0,
            "bus_in": 10.0,
            "bus_out": 20.0,
            "drops": 0.5,
            "uplinks": {"mqtt": {"to": 5.0, "from": 0.0}},
        }
    ]
    assert list(uplink_sections({"uplinks": [{"name": "k", "protocol": "kafka"}]})) == ["k"]
    assert list(uplink_sections({"uplinks": {"r": {"state": "up"}}, "bridge": {}})) == ["r"]
    assert uplink_sections({"bridge": {"enabled": False}}) == {}


def test_the_recording_format_keeps_every_payload_byte_for_byte(tmp_path: Path) -> None:
    payloads = [b'{"type": "INFO"}', "ünïcode".encode(), b"\xff\x00binary", b""]
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(line(f"t/{i}", p, 1.5 + i) for i, p in enumerate(payloads)))
    back = load(path)
    assert [m.payload for m in back] == payloads
    assert [(m.topic, m.time) for m in back] == [(f"t/{i}", 1.5 + i) for i in range(4)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope\n", "line 1: not JSON"),
        ('{"time": "x", "topic": "a", "payload": ""}\n', "line 1: 'time' must be a number"),
        ('\n{"time": 1, "topic": "", "payload": ""}\n', "line 2: 'topic' must be a non-empty"),
        ('{"time": 1, "topic": "a"}\n', "line 1: expected 'payload' or 'payload_base64'"),
        ('{"time": 1, "topic": "a", "payload_base64": "!!"}\n', "line 1: 'payload_base64' is not"),
    ],
)
def test_a_bad_recording_line_is_named(text: str, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        list(read(io.StringIO(text)))
