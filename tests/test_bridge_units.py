"""The bridge's parts without a broker: routes and their trees, the loop guard, the outbox,
the back-off schedule, and the configuration checks for routes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argentic_edge.bridge.loopguard import LoopGuard
from argentic_edge.bridge.outbox import Outbox, Outgoing
from argentic_edge.bridge.routes import (
    RouteTable,
    bus_topic_problem,
    covers,
    minimal_prefixes,
    mqtt_topic_problem,
    related,
)
from argentic_edge.bridge.service import backoff_delay
from argentic_edge.config import (
    DEFAULT_ROUTES,
    ConfigError,
    MqttConfig,
    QosLevels,
    RetainMessages,
    Route,
    parse_config,
)
from argentic_edge.topics import TopicFilter


def table(*routes: Route, **mqtt: object) -> RouteTable:
    return RouteTable(routes, MqttConfig(**mqtt))  # type: ignore[arg-type]


# --- routes ---------------------------------------------------------------------------------


def test_prefixes_rewrite_topics_like_mosquitto_bridges() -> None:
    routes = table(
        Route(topic="agent/#", direction="both", local_prefix="lan/", remote_prefix="site/kitchen/")
    )
    (out,) = routes.outbound("lan/agent/status/info")
    assert out.topic == "site/kitchen/agent/status/info"
    assert routes.outbound("agent/status/info") == ()  # without the local prefix: not routed
    (inbound,) = routes.inbound("site/kitchen/agent/tools/call/7").deliveries
    assert inbound.topic == "lan/agent/tools/call/7"
    assert inbound.frame_head == b"lan/agent/tools/call/7 "
    assert routes.bus_prefixes == ["lan/agent"]
    assert [s.filter.value for s in routes.subscriptions] == ["site/kitchen/agent/#"]


def test_direction_decides_which_side_is_read() -> None:
    routes = table(Route(topic="logs/#", direction="out"), Route(topic="cmd/#", direction="in"))
    assert routes.outbound("logs/x") and not routes.outbound("cmd/x")
    assert routes.inbound("cmd/x").deliveries and not routes.inbound("logs/x").deliveries
    assert routes.bus_prefixes == ["logs"]
    assert [s.filter.value for s in routes.subscriptions] == ["cmd/#"]


def test_auto_qos_and_retain_follow_the_category_of_the_shared_topic() -> None:
    routes = table(
        Route(topic="#", remote_prefix="edge/"),
        qos_levels=QosLevels(tool_calls=2, status=0),
        retain_messages=RetainMessages(status=True, tool_registry=True),
    )
    expected = {
        "agent/tools/call/t1": (2, False),
        "agent/researcher/tools/call/t1": (2, False),
        "agent/status/info": (0, True),
        "_ping/agent-1": (0, True),
        "agent/tools/register": (1, True),
        "agent/tools/response/t1": (1, False),
        "logs/debug": (0, False),
        "something/else": (0, False),  # uncategorized: qos 0, not retained
    }
    for topic, (qos, retain) in expected.items():
        (delivery,) = routes.outbound(topic)
        assert (delivery.topic, delivery.qos, delivery.retain) == (f"edge/{topic}", qos, retain)


def test_explicit_qos_and_retain_win_over_categories() -> None:
    routes = table(
        Route(topic="agent/#", qos=2, retain=False), retain_messages=RetainMessages(status=True)
    )
    (delivery,) = routes.outbound("agent/status/info")
    assert (delivery.qos, delivery.retain) == (2, False)


def test_subscription_qos_for_auto_is_the_highest_category_and_at_least_one() -> None:
    assert table(Route(topic="a/#")).subscriptions[0].qos == 1
    assert table(Route(topic="a/#"), qos_levels=QosLevels(responses=2)).subscriptions[0].qos == 2
    assert table(Route(topic="a/#", qos=0)).subscriptions[0].qos == 0


def test_a_message_goes_once_per_destination_first_route_wins() -> None:
    routes = table(
        Route(topic="agent/#", qos=1),
        Route(topic="#", qos=0),
        Route(topic="agent/+/x", remote_prefix="copy/"),
    )
    deliveries = routes.outbound("agent/a/x")
    assert [(d.topic, d.qos, d.route.index) for d in deliveries] == [
        ("agent/a/x", 1, 0),
        ("copy/agent/a/x", 0, 2),
    ]  # auto, uncategorized: 0


def test_broker_subscriptions_drop_covered_filters_and_keep_the_highest_qos() -> None:
    routes = table(
        Route(topic="agent/#", qos=2),
        Route(topic="#", qos=1),
        Route(topic="agent/+/status", qos=0),
        Route(topic="#", qos=0),
    )
    assert [(s.filter.value, s.qos, s.identifier) for s in routes.subscriptions] == [("#", 2, 1)]
    assert routes.overlaps == []
    partial = table(Route(topic="a/+/c"), Route(topic="a/b/#"))
    assert [s.filter.value for s in partial.subscriptions] == ["a/+/c", "a/b/#"]
    assert partial.overlaps == [("a/+/c", "a/b/#")]
    assert partial.inbound("a/b/c").subscription_id == 1
    assert partial.inbound("a/b/d").subscription_id == 2


def test_default_routes_have_disjoint_subscriptions() -> None:
    routes = RouteTable(DEFAULT_ROUTES, MqttConfig())
    assert [s.filter.value for s in routes.subscriptions] == [
        "agent/#",
        "tools/#",
        "supervisor/#",
        "_ping/#",
    ]
    assert routes.overlaps == []
    assert routes.bus_prefixes == ["_ping", "agent", "logs", "supervisor", "tools"]


def test_echo_expectations_are_computed_per_side() -> None:
    routes = table(
        Route(topic="a/#", direction="both"),
        Route(topic="b/#", direction="out"),
        Route(topic="c/#", direction="in"),
    )
    assert routes.outbound("a/x")[0].echo_expected  # we subscribe a/# on the broker
    assert not routes.outbound("b/x")[0].echo_expected
    assert routes.inbound("a/x").deliveries[0].echo_expected  # our bus SUB reads a/...
    assert not routes.inbound("c/x").deliveries[0].echo_expected


def test_topics_that_cannot_cross_are_flagged() -> None:
    assert bus_topic_problem("has space") == "space_in_topic"
    assert (
        bus_topic_problem("a//b")
        == bus_topic_problem("/a")
        == bus_topic_problem("a/")
        == "empty_level"
    )
    assert bus_topic_problem("a\x00b") == "nul_in_topic"
    assert bus_topic_problem("x" * 70000) == "topic_too_long"
    assert bus_topic_problem("agent/tools/call/é") is None
    assert mqtt_topic_problem("agent/+/x") == mqtt_topic_problem("a/#") == "wildcard_in_topic"
    assert mqtt_topic_problem("a//b") is None  # legal MQTT
    routes = table(Route(topic="#"))
    assert routes.outbound("agent/+/x")[0].problem == "wildcard_in_topic"
    assert routes.inbound("has space/x").deliveries[0].problem == "space_in_topic"


def test_the_resolution_cache_is_bounded() -> None:
    routes = table(Route(topic="#"))
    for index in range(5000):
        routes.outbound(f"t/{index}")
        routes.inbound(f"t/{index}")
    assert len(routes._out_cache) <= 4096 and len(routes._in_cache) <= 4096


def test_minimal_prefixes() -> None:
    assert minimal_prefixes(["agent", "agent/", "tools", "ag"]) == ["ag", "tools"]
    assert minimal_prefixes(["", "x"]) == [""]


_level = st.sampled_from(["a", "b", "c"])
_filter_level = st.sampled_from(["a", "b", "c", "+"])


@st.composite
def filters(draw: st.DrawFn) -> TopicFilter:
    levels = draw(st.lists(_filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return TopicFilter("/".join(levels))


@settings(max_examples=300, deadline=None)
@given(filters(), filters(), st.lists(_level, min_size=1, max_size=6))
def test_covers_never_claims_more_than_matching_shows(
    wide: TopicFilter, narrow: TopicFilter, levels: list[str]
) -> None:
    topic = "/".join(levels)
    if covers(wide, narrow) and narrow.matches(topic):
        assert wide.matches(topic)


@settings(max_examples=200, deadline=None)
@given(filters(), filters())
def test_covers_is_exact_on_small_topic_spaces(wide: TopicFilter, narrow: TopicFilter) -> None:
    """Against every topic of up to 5 levels over {a, b, c}: covers() is exactly inclusion."""
    topics = [""]
    universe = []
    for _ in range(5):
        topics = [f"{t}/{level}" if t else level for t in topics for level in "abc"]
        universe += topics
    included = all(wide.matches(t) for t in universe if narrow.matches(t))
    assert covers(wide, narrow) == included


@settings(max_examples=200, deadline=None)
@given(st.lists(filters(), min_size=1, max_size=8))
def test_related_keeps_every_pair_that_can_share_a_topic(group: list[TopicFilter]) -> None:
    """The pruning that keeps large route tables cheap to build never drops a real relation."""
    neighbours = related(group)
    for index, first in enumerate(group):
        assert neighbours[index] == sorted(neighbours[index])
        for other, second in enumerate(group):
            if covers(first, second) or covers(second, first):
                assert other in neighbours[index]


def test_many_unrelated_routes_are_all_subscribed_without_overlaps() -> None:
    routes = [Route(topic=f"site{k}/#", direction="in") for k in range(300)]
    routes += [Route(topic="site7/+/sensor", direction="in"), Route(topic="+/x", direction="in")]
    built = table(*routes)
    assert len(built.subscriptions) == 301  # site7/+/sensor is covered by site7/#
    assert ("site1/#", "+/x") in built.overlaps
    assert len(built.overlaps) == 300  # +/x can share a topic with each site<k>/#


def test_route_prefixes_must_make_a_valid_filter() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"bridge": {"routes": [{"topic": "#", "local_prefix": "lan"}]}}, env={})
    (problem,) = error.value.problems
    assert problem.path == "bridge.routes[0].local_prefix"
    assert "'lan#'" in problem.expected
    parse_config({"bridge": {"routes": [{"topic": "#", "local_prefix": "lan/"}]}}, env={})


# --- loop guard -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_loop_guard_recognises_each_injected_message_once() -> None:
    guard = LoopGuard(ttl=5, max_entries=10, clock=Clock())
    guard.add("a", b"1")
    guard.add("a", b"1")  # the same message injected twice: two echoes expected
    assert not guard.consume("a", b"2") and not guard.consume("b", b"1")
    assert guard.consume("a", b"1") and guard.consume("a", b"1")
    assert not guard.consume("a", b"1")
    assert guard.stats() == {"waiting": 0, "echoes_dropped": 2, "expired": 0, "evicted": 0}


def test_loop_guard_entries_expire() -> None:
    clock = Clock()
    guard = LoopGuard(ttl=5, max_entries=10, clock=clock)
    guard.add("a", b"1")
    clock.now += 5.01
    assert not guard.consume("a", b"1")
    assert guard.stats()["expired"] == 1 and len(guard) == 0


def test_a_matched_entry_expiring_does_not_take_a_newer_twin_with_it() -> None:
    clock = Clock()
    guard = LoopGuard(ttl=5, max_entries=10, clock=clock)
    guard.add("a", b"1")
    assert guard.consume("a", b"1")
    clock.now += 4
    guard.add("a", b"1")  # the same content again, 4 s later
    clock.now += 2  # the first entry's time is up, the second's is not
    assert guard.consume("a", b"1")


def test_loop_guard_is_bounded_and_prefers_to_forget_matched_entries() -> None:
    clock = Clock()
    guard = LoopGuard(ttl=5, max_entries=3, clock=clock)
    for index in range(100):  # a fast stream whose echoes all come back
        guard.add("t", b"%d" % index)
        assert guard.consume("t", b"%d" % index)
    assert guard.evicted == 0 and len(guard._order) <= 3
    for index in range(5):  # echoes that never come: the oldest live ones are pushed out
        guard.add("lost", b"%d" % index)
    assert guard.evicted == 2 and len(guard) == 3
    assert not guard.consume("lost", b"0") and guard.consume("lost", b"4")


# --- outbox ---------------------------------------------------------------------------------


def item(index: int, size: int = 10) -> Outgoing:
    return Outgoing(f"t/{index}", b"x" * size, 1, False)


def test_outbox_drops_the_oldest_by_count() -> None:
    box = Outbox(max_messages=3, max_bytes=10_000)
    dropped = [d for i in range(5) for d in box.append(item(i))]
    assert [d.topic for d in dropped] == ["t/0", "t/1"]
    assert [box.popleft().topic for _ in range(len(box))] == ["t/2", "t/3", "t/4"]
    assert box.dropped == 2 and box.bytes == 0


def test_outbox_drops_the_oldest_by_bytes_and_refuses_what_can_never_fit() -> None:
    box = Outbox(max_messages=100, max_bytes=50)  # each item is 10 + 3 bytes
    for index in range(5):
        box.append(item(index))
    assert len(box) == 3 and box.bytes == 39
    (too_big,) = box.append(item(9, size=60))
    assert too_big.topic == "t/9" and len(box) == 3
    stats = box.stats()
    assert 0 <= stats.pop("oldest_age") < 60
    assert stats == {
        "messages": 3,
        "bytes": 39,
        "max_messages": 100,
        "max_bytes": 50,
        "max_age": 86_400.0,
        "dropped_oldest": 3,
        "durable": False,
    }


def test_outbox_drops_what_waited_longer_than_max_age() -> None:
    now = [1000.0]
    box = Outbox(max_messages=100, max_bytes=10_000, max_age=60, clock=lambda: now[0])
    for index in range(3):
        box.append(Outgoing(f"t/{index}", b"x", 1, False, created=now[0] + index * 30))
    now[0] += 75  # t/0 (75 s) and t/1 (45 s)... only t/0 is past 60 s
    assert [d.topic for d in box.expire()] == ["t/0"]
    assert box.stats()["oldest_age"] == 45 and box.dropped == 1
    now[0] += 100
    dropped = box.append(Outgoing("t/new", b"x", 1, False, created=now[0]))
    assert [d.topic for d in dropped] == ["t/1", "t/2"] and len(box) == 1


def test_outbox_requeue_puts_items_back_at_the_front_in_order() -> None:
    box = Outbox(max_messages=10, max_bytes=10_000)
    for index in range(4):
        box.append(item(index))
    handed = [box.popleft(), box.popleft()]
    box.requeue(handed)
    assert [box.popleft().topic for _ in range(len(box))] == ["t/0", "t/1", "t/2", "t/3"]
    assert box.bytes == 0


# --- back-off -------------------------------------------------------------------------------


def test_backoff_doubles_from_the_retry_delay_with_jitter_up_to_the_cap() -> None:
    low = [backoff_delay(n, 0.5, rand=lambda: 0.0) for n in range(1, 10)]
    high = [backoff_delay(n, 0.5, rand=lambda: 1.0) for n in range(1, 10)]
    assert low[:4] == [0.375, 0.75, 1.5, 3.0]
    assert high[:4] == [0.625, 1.25, 2.5, 5.0]
    assert max(high) == 60.0 and backoff_delay(100, 0.5) <= 60.0
    assert backoff_delay(1, 120.0, rand=lambda: 1.0) == 120.0  # a long delay is not cut short
