"""Bridge routes: which topic goes where, at what QoS, and what the broker subscription is.

Routes follow mosquitto's bridge: a route's ``topic`` is the part both sides share, the local
topic is ``local_prefix + topic`` and the remote one ``remote_prefix + topic``. ``out`` carries
bus to broker, ``in`` broker to bus, ``both`` both.

Resolving a topic (matching routes, rewriting prefixes, QoS and retain by category, checking the
result can exist on the other side) goes through topic trees, and its result is cached per
topic: agents use a handful of topics over and over, so the hot path is one dict lookup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from argentic_edge.config import QosLevels, RetainMessages, Route
from argentic_edge.topics import (
    MAX_TOPIC_BYTES,
    TopicFilter,
    TopicTree,
    can_share_a_topic,
    category_of,
    has_mqtt_forbidden_character,
)

CACHE_SIZE = 4096  # distinct topics remembered per direction; cleared at once when full


@dataclass(slots=True)
class Counters:
    """What one route carried in one direction."""

    messages: int = 0
    bytes: int = 0
    buffered: int = 0  # messages that had to wait in the outbox (out only)
    dropped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "buffered": self.buffered,
            "dropped": dict(self.dropped),
        }


def bus_topic_problem(topic: str) -> str | None:
    """Why an MQTT topic cannot be put on the bus (a reason key), or None if it can.

    Empty levels (``a//b``) are legal MQTT, but Argentic's topics never have them and a bus
    subscriber's prefix match would treat them oddly, so they are refused too.
    """
    if " " in topic:
        return "space_in_topic"
    if "\x00" in topic:
        return "nul_in_topic"
    if "" in topic.split("/"):
        return "empty_level"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "topic_too_long"
    return None


def mqtt_topic_problem(topic: str) -> str | None:
    """Why a bus topic cannot be published on MQTT (a reason key), or None if it can."""
    if "+" in topic or "#" in topic:
        return "wildcard_in_topic"
    if "\x00" in topic:
        return "nul_in_topic"
    if has_mqtt_forbidden_character(topic):
        return "forbidden_character"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return "topic_too_long"
    return None


class BridgeRoute:
    """One configured route, with its filters on both sides and its counters."""

    def __init__(
        self, index: int, route: Route, qos_levels: QosLevels, retain_messages: RetainMessages
    ) -> None:
        self.index = index
        self.route = route
        self.local_filter = TopicFilter(route.local_prefix + route.topic)
        self.remote_filter = TopicFilter(route.remote_prefix + route.topic)
        self.outbound = route.direction in ("out", "both")
        self.inbound = route.direction in ("in", "both")
        self._qos_levels = qos_levels
        self._retain_messages = retain_messages
        self.counters_out = Counters()
        self.counters_in = Counters()
        # What a durable outbox stores to find this route again after a restart: the same
        # filters both sides mean the same route, wherever it now is in the list.
        self.key = f"{route.direction} {self.local_filter.value} {self.remote_filter.value}"

    def remote_topic(self, local_topic: str) -> str:
        return self.route.remote_prefix + local_topic[len(self.route.local_prefix) :]

    def local_topic(self, remote_topic: str) -> str:
        return self.route.local_prefix + remote_topic[len(self.route.remote_prefix) :]

    def qos(self, shared_topic: str) -> int:
        """The route's QoS, or with ``auto`` the category's (uncategorized: 0)."""
        if self.route.qos != "auto":
            return self.route.qos
        category = category_of(shared_topic)
        return getattr(self._qos_levels, category) if category else 0

    def retain(self, shared_topic: str) -> bool:
        """The route's retain flag, or with ``auto`` the category's (uncategorized: false)."""
        if self.route.retain != "auto":
            return self.route.retain
        category = category_of(shared_topic)
        return getattr(self._retain_messages, category) if category else False

    @property
    def subscription_qos(self) -> int:
        """QoS of the broker subscription for an ``in`` route.

        ``auto`` subscribes at the highest QoS any category uses, and at least 1: the broker
        delivers at the lower of the publication's and the subscription's QoS, and only QoS>=1
        messages wait in a persistent session while the bridge is away.
        """
        if self.route.qos != "auto":
            return self.route.qos
        return max(1, *(int(qos) for qos in vars(self._qos_levels).values()))

    def describe(self) -> dict[str, Any]:
        route = self.route
        document: dict[str, Any] = {
            "topic": route.topic,
            "direction": route.direction,
            "qos": route.qos,
            "retain": route.retain,
            "local": self.local_filter.value,
            "remote": self.remote_filter.value,
        }
        if self.outbound:
            document["out"] = self.counters_out.to_dict()
        if self.inbound:
            document["in"] = self.counters_in.to_dict()
            del document["in"]["buffered"]  # only bus-to-broker messages wait
        return document


@dataclass(frozen=True, slots=True)
class OutDelivery:
    """Where one bus message goes on the broker, through one route."""

    route: BridgeRoute
    topic: str
    qos: int
    retain: bool
    problem: str | None  # a reason to drop it instead
    echo_expected: bool  # our own subscription covers the topic (matters on MQTT 3.1.1)


@dataclass(frozen=True, slots=True)
class InDelivery:
    """Where one broker message goes on the bus, through one route."""

    route: BridgeRoute
    topic: str
    frame_head: bytes  # b"<local topic> ", the payload follows
    problem: str | None
    echo_expected: bool  # an outbound route covers the topic, so our bus subscription sees it


@dataclass(frozen=True, slots=True)
class InResolution:
    deliveries: tuple[InDelivery, ...]
    subscription_id: int | None  # the one subscription whose copy of the message we keep


@dataclass(frozen=True)
class Subscription:
    """One broker subscription: the filter, its QoS and its MQTT 5 subscription identifier."""

    filter: TopicFilter
    qos: int
    identifier: int


def covers(wide: TopicFilter, narrow: TopicFilter) -> bool:
    """True if every topic ``narrow`` matches is matched by ``wide`` too."""
    narrow_levels = narrow.levels
    for index, level in enumerate(wide.levels):
        if level == "#":
            return True
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#" or (level != "+" and (other == "+" or other != level)):
            return False
    return len(narrow_levels) == len(wide.levels)


def related(filters: Sequence[TopicFilter]) -> list[list[int]]:
    """For each filter, the indices (ascending) of the others that can match a topic in common.

    Two filters whose first levels are different names never can, so the pairwise checks below
    look only within a first level plus the filters starting with a wildcard: with a thousand
    routes for a thousand sites, that keeps building the table linear instead of quadratic.
    """
    by_first: dict[str, list[int]] = {}
    wild: list[int] = []
    for index, topic_filter in enumerate(filters):
        first = topic_filter.levels[0]
        (wild if first in ("+", "#") else by_first.setdefault(first, [])).append(index)
    everyone = list(range(len(filters)))
    return [
        everyone
        if topic_filter.levels[0] in ("+", "#")
        else sorted(by_first[topic_filter.levels[0]] + wild)
        for topic_filter in filters
    ]


def minimal_subscriptions(routes: Sequence[BridgeRoute]) -> list[Subscription]:
    """The broker subscriptions for the inbound routes, without any filter another one covers.

    A broker delivers a message once per matching subscription, so ``agent/#`` next to ``#``
    would bring every agent message twice. The covering filter is subscribed at the highest
    QoS among the routes it stands for.
    """
    inbound = [route for route in routes if route.inbound]
    neighbours = related([route.remote_filter for route in inbound])
    kept: list[tuple[TopicFilter, int]] = []
    for route, near in zip(inbound, neighbours, strict=True):
        candidate = route.remote_filter
        others = [inbound[index] for index in near]
        if any(
            covers(other.remote_filter, candidate)
            and (other.remote_filter != candidate or other.index < route.index)
            for other in others
            if other is not route
        ):
            continue
        qos = max(
            other.subscription_qos for other in others if covers(candidate, other.remote_filter)
        )
        kept.append((candidate, qos))
    return [
        Subscription(topic_filter, qos, number)
        for number, (topic_filter, qos) in enumerate(kept, start=1)
    ]


def minimal_prefixes(prefixes: Sequence[str]) -> list[str]:
    """Bus (libzmq) subscriptions: a prefix that another one starts covers nothing new.

    Sorted, everything a kept prefix covers follows it directly, so comparing with the last
    kept prefix is enough.
    """
    result: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not result or not prefix.startswith(result[-1]):
            result.append(prefix)
    return result


def overlapping_filters(filters: Sequence[TopicFilter]) -> list[tuple[str, str]]:
    """Pairs of filters a single topic can match both of (``a/+/c`` and ``a/b/#``)."""
    pairs = []
    for index, (first, near) in enumerate(zip(filters, related(filters), strict=True)):
        for other in near:
            second = filters[other]
            if other > index and can_share_a_topic(first.levels, second.levels):
                pairs.append((first.value, second.value))
    return pairs


Resolved = TypeVar("Resolved")


def _remember(
    cache: dict[str, Resolved], topic: str, resolve: Callable[[str], Resolved]
) -> Resolved:
    """Resolve a topic not in the cache and keep the answer (the cache starts over when full)."""
    found = resolve(topic)
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[topic] = found
    return found


class RouteTable:
    """Every route of a bridge, indexed both ways by topic trees."""

    def __init__(self, routes: Sequence[Route], link: object) -> None:
        """``link`` is the uplink's protocol settings: ``qos_levels`` and ``retain_messages``
        there decide ``auto`` routes (a protocol without them gets the defaults)."""
        qos_levels = getattr(link, "qos_levels", None) or QosLevels()
        retain = getattr(link, "retain_messages", None) or RetainMessages()
        self.routes = tuple(
            BridgeRoute(index, route, qos_levels, retain) for index, route in enumerate(routes)
        )
        self._out_tree: TopicTree[BridgeRoute] = TopicTree(
            (route.local_filter, route) for route in self.routes if route.outbound
        )
        self._in_tree: TopicTree[BridgeRoute] = TopicTree(
            (route.remote_filter, route) for route in self.routes if route.inbound
        )
        self.subscriptions = minimal_subscriptions(self.routes)
        self._subscription_tree: TopicTree[int] = TopicTree(
            (sub.filter, sub.identifier) for sub in self.subscriptions
        )
        self.overlaps = overlapping_filters([sub.filter for sub in self.subscriptions])
        self.bus_prefixes = minimal_prefixes(
            [route.local_filter.zmq_prefix for route in self.routes if route.outbound]
        )
        self._out_cache: dict[str, tuple[OutDelivery, ...]] = {}
        self._in_cache: dict[str, InResolution] = {}

    def outbound(self, local_topic: str) -> tuple[OutDelivery, ...]:
        """Where a bus message goes: one delivery per distinct broker topic, first route wins."""
        found = self._out_cache.get(local_topic)
        if found is None:
            found = _remember(self._out_cache, local_topic, self._resolve_out)
        return found

    def _resolve_out(self, local_topic: str) -> tuple[OutDelivery, ...]:
        deliveries: dict[str, OutDelivery] = {}
        for route in sorted(self._out_tree.match(local_topic), key=lambda r: r.index):
            remote = route.remote_topic(local_topic)
            if remote in deliveries:
                continue
            shared = local_topic[len(route.route.local_prefix) :]
            deliveries[remote] = OutDelivery(
                route,
                remote,
                route.qos(shared),
                route.retain(shared),
                mqtt_topic_problem(remote),
                self.subscribed(remote),
            )
        return tuple(deliveries.values())

    def subscribed(self, remote_topic: str) -> bool:
        """True if our broker subscriptions cover the topic (what we publish there comes back)."""
        return bool(self._subscription_tree.match(remote_topic))

    def inbound(self, remote_topic: str) -> InResolution:
        """Where a broker message goes: one delivery per distinct bus topic, first route wins."""
        found = self._in_cache.get(remote_topic)
        if found is None:
            found = _remember(self._in_cache, remote_topic, self._resolve_in)
        return found

    def _resolve_in(self, remote_topic: str) -> InResolution:
        deliveries: dict[str, InDelivery] = {}
        for route in sorted(self._in_tree.match(remote_topic), key=lambda r: r.index):
            local = route.local_topic(remote_topic)
            if local in deliveries:
                continue
            deliveries[local] = InDelivery(
                route,
                local,
                local.encode("utf-8") + b" ",
                bus_topic_problem(local),
                bool(self._out_tree.match(local)),
            )
        identifiers = self._subscription_tree.match(remote_topic)
        return InResolution(tuple(deliveries.values()), min(identifiers) if identifiers else None)

    def by_key(self, key: str) -> BridgeRoute | None:
        """The first outbound route with this ``key`` (see BridgeRoute.key)."""
        return next((r for r in self.routes if r.outbound and r.key == key), None)

    def describe(self) -> list[dict[str, Any]]:
        return [route.describe() for route in self.routes]
