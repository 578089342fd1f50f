"""Topic filters, the dispatch tree, frames and categories."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argentic_edge.topics import (
    FrameError,
    TopicError,
    TopicFilter,
    TopicTree,
    category_of,
    decode_frame,
    encode_frame,
    validate_topic_name,
)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("agent/+/status", "agent/a1/status", True),
        ("agent/+/status", "agent/a1/status/x", False),
        ("agent/+/status", "agent/status", False),
        ("agent/#", "agent", True),
        ("agent/#", "agent/tools/call/42", True),
        ("agent/#", "agents/x", False),
        ("#", "anything/at/all", True),
        ("a/b", "a/b", True),
        ("a/b", "a/bc", False),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
    ],
)
def test_filter_matching_is_exact(pattern: str, topic: str, expected: bool) -> None:
    assert TopicFilter(pattern).matches(topic) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("agent/+/status", "agent/"),
        ("agent/#", "agent"),
        ("#", ""),
        ("+/x", ""),
        ("agent/tools/call/42", "agent/tools/call/42"),
    ],
)
def test_zmq_prefix_is_the_longest_literal_prefix(pattern: str, prefix: str) -> None:
    topic_filter = TopicFilter(pattern)
    assert topic_filter.zmq_prefix == prefix


@pytest.mark.parametrize("pattern", ["", "a/#/b", "a/b#", "a+/b", "a b", "x\x00"])
def test_invalid_filters_are_refused(pattern: str) -> None:
    with pytest.raises(TopicError):
        TopicFilter(pattern)


@pytest.mark.parametrize("topic", ["", "a b", "a/+", "a/#", "x" * 70000])
def test_invalid_topic_names_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_name(topic)


levels = st.sampled_from(["agent", "tools", "status", "a", "b", ""])
topics = st.lists(levels, min_size=1, max_size=5).map("/".join)
filters = st.lists(
    st.sampled_from(["agent", "tools", "a", "b", "+"]), min_size=1, max_size=4
).flatmap(lambda parts: st.sampled_from(["/".join(parts), "/".join(parts) + "/#"]))


@given(st.lists(filters, max_size=20), st.lists(topics, max_size=20))
@settings(max_examples=200, deadline=None)
def test_tree_finds_exactly_what_a_scan_finds(patterns: list[str], samples: list[str]) -> None:
    tree: TopicTree[int] = TopicTree()
    parsed = [TopicFilter(p) for p in patterns]
    for index, topic_filter in enumerate(parsed):
        tree.insert(topic_filter, index)
    for topic in samples:
        expected = sorted(i for i, f in enumerate(parsed) if f.matches(topic))
        assert sorted(tree.match(topic)) == expected


def test_tree_removal() -> None:
    tree: TopicTree[str] = TopicTree([(TopicFilter("a/#"), "x"), (TopicFilter("a/+"), "y")])
    assert sorted(tree.match("a/b")) == ["x", "y"]
    assert tree.remove(TopicFilter("a/#"), "x") and not tree.remove(TopicFilter("a/#"), "x")
    assert tree.match("a/b") == ["y"] and len(tree) == 1


def test_frames_are_argentic_wire_format() -> None:
    payload = b'{"type":"ask_question","data":"a b c"}'
    frame = encode_frame("agent/command/ask_question", payload)
    assert frame == b"agent/command/ask_question " + payload
    assert decode_frame(frame) == ("agent/command/ask_question", payload)


@pytest.mark.parametrize("frame", [b"no-space-here", b" leading", b"\xff\xfe topic"])
def test_malformed_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(frame)


@pytest.mark.parametrize(
    ("topic", "category"),
    [
        ("agent/tools/call/abc", "tool_calls"),
        ("agent/researcher/tools/call/x", "tool_calls"),
        ("agent/tools/response/abc", "responses"),
        ("agent/response/answer/u1", "responses"),
        ("supervisor/results", "responses"),
        ("agent/status/info", "status"),
        ("_ping/agent-1", "status"),
        ("agent/tools/register", "tool_registry"),
        ("tools/search/register", "tool_registry"),
        ("agent/log", "logs"),
        ("logs/info", "logs"),
        ("agent/researcher/tasks", None),
    ],
)
def test_categories_follow_the_topics_argentic_uses(topic: str, category: str | None) -> None:
    assert category_of(topic) == category
