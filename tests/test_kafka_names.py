"""The bus <-> Kafka name mapping: exact both ways, legal on Kafka, filters as patterns.

Hypothesis makes the topics: any text (spaces, the separator and the escape character written
literally, hex digits right after an escape character, non-ASCII, empty levels) and checks the
round trip, Kafka's alphabet and length rule, and that a filter's pattern matches a topic's
Kafka name exactly when the MQTT filter matches the topic.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argentic_edge.bridge.kafkanames import (
    LEGAL,
    MAX_NAME,
    RESERVED,
    TOO_LONG,
    UNDECODABLE,
    KafkaNameError,
    TopicMap,
)
from argentic_edge.topics import parse_filter

MAPS = [TopicMap(), TopicMap(separator="-", escape="_"), TopicMap(separator="_", escape=".")]

# Levels rich in what is hard: the separators, escape characters, hex digits, '/' neighbours.
_tricky = st.text(alphabet=st.sampled_from("._-/ AF09af+é\u2603$"), max_size=12)
_any = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
topics = st.one_of(_tricky, _any).filter(bool)


def _name_or_none(mapping: TopicMap, topic: str) -> str | None:
    try:
        return mapping.to_kafka(topic)
    except KafkaNameError as exc:
        assert exc.reason in (TOO_LONG, RESERVED)
        return None


@pytest.mark.parametrize("mapping", MAPS, ids=lambda m: f"sep{m.separator}esc{m.escape}")
@settings(max_examples=400, deadline=None)
@given(topic=topics)
def test_every_topic_round_trips_through_a_legal_name(mapping: TopicMap, topic: str) -> None:
    name = _name_or_none(mapping, topic)
    if name is None:
        return
    assert set(name) <= LEGAL and 1 <= len(name) <= MAX_NAME
    assert mapping.to_bus(name) == topic
    assert mapping.to_kafka(mapping.to_bus(name)) == name


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet=sorted(LEGAL), min_size=1, max_size=40))
def test_any_kafka_name_decodes_to_a_topic_that_maps_to_a_name_decoding_the_same(
    name: str,
) -> None:
    mapping = TopicMap()
    try:
        topic = mapping.to_bus(name)
    except KafkaNameError as exc:
        assert exc.reason == UNDECODABLE
        return
    again = _name_or_none(mapping, topic)
    if again is not None:
        assert mapping.to_bus(again) == topic


def test_the_names_a_user_sees() -> None:
    mapping = TopicMap()
    assert mapping.to_kafka("agent/tools/call") == "agent.tools.call"
    assert mapping.to_kafka("agent/command/ask_question") == "agent.command.ask_question"
    assert mapping.to_kafka("logs/agent/main.py") == "logs.agent.main_2Epy"
    assert mapping.to_kafka("sensor_A1/a b") == "sensor_5FA1.a_20b"
    assert mapping.to_kafka("café") == "caf_C3_A9"
    assert mapping.to_kafka("a//b") == "a..b"
    assert mapping.to_bus("agent.tools.call.3fa85f64-5717") == "agent/tools/call/3fa85f64-5717"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [("a" * 250, TOO_LONG), ("/", RESERVED), ("//", RESERVED), ("__consumer_offsets", RESERVED)],
)
def test_topics_without_a_kafka_name_are_refused_with_a_reason(topic: str, reason: str) -> None:
    with pytest.raises(KafkaNameError) as caught:
        TopicMap().to_kafka(topic)
    assert caught.value.reason == reason
    assert "249" in str(caught.value) or "keeps for itself" in str(caught.value)


def test_a_name_exactly_at_the_limit_is_kept() -> None:
    assert TopicMap().to_kafka("a" * 249) == "a" * 249


def test_bad_escapes_from_another_producer_are_refused() -> None:
    with pytest.raises(KafkaNameError) as caught:
        TopicMap().to_bus("agent.x_C3")
    assert caught.value.reason == UNDECODABLE


@pytest.mark.parametrize(
    "settings_",
    [{"separator": "/"}, {"separator": "x"}, {"separator": "A"}, {"escape": "."}],
)
def test_a_map_that_could_not_round_trip_is_refused(settings_: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="topic_map"):
        TopicMap(**settings_)


_levels = st.lists(st.sampled_from(["a", "b", "a.b", "x_2E", "é", ""]), min_size=1, max_size=4)
_filter_levels = st.lists(
    st.sampled_from(["a", "b", "a.b", "x_2E", "é", "", "+"]), min_size=1, max_size=4
)


@pytest.mark.parametrize("mapping", MAPS[:2], ids=lambda m: f"sep{m.separator}")
@settings(max_examples=500, deadline=None)
@given(topic_levels=_levels, filter_levels=_filter_levels, hash_tail=st.booleans())
def test_a_filters_pattern_matches_exactly_the_names_of_the_topics_it_matches(
    mapping: TopicMap, topic_levels: list[str], filter_levels: list[str], hash_tail: bool
) -> None:
    topic = "/".join(topic_levels)
    text = "/".join([*filter_levels, "#"] if hash_tail else filter_levels)
    name = _name_or_none(mapping, topic)
    if name is None or not topic or not text:
        return
    pattern = mapping.subscription([text])
    assert bool(pattern.match(name)) == parse_filter(text).matches(topic), (topic, text)


def test_several_filters_make_one_anchored_pattern() -> None:
    pattern = TopicMap().subscription(["agent/#", "tools/+/call"])
    assert pattern.match("agent")
    assert pattern.match("agent.tools.call")
    assert pattern.match("tools.x.call")
    assert not pattern.match("tools.x.call.y")
    assert not pattern.match("agentx")
    assert re.fullmatch(pattern, "tools..call")
