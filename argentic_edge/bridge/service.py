"""The uplink service: the local ZeroMQ bus and one broker, joined by routes, any protocol.

One ``Uplink`` per configured uplink (service ``uplink:<name>``); what differs between MQTT,
Kafka, Redis and RabbitMQ lives in the ``Link`` the factory makes (bridge/link.py,
bridge/protocols.py). This module owns what they share: routes, the outbox, the loop guard,
back-off, counters, status and health.

Bus to broker: a SUB socket on the bus (one libzmq subscription per outbound route prefix) is
read through ``BusReader`` (bus/reader.py): in batches, on a CPU budget high enough for the
uplink's full rate (past it the reader pauses and its queue buffers; falling a whole queue
behind, where libzmq drops, shows as ``bus_reader.queue_full``). Each frame is matched to its
routes (a cached topic-tree lookup), rewritten to the broker topic and handed to the link
without waiting for the broker: QoS 0 straight on, QoS>=1 up to the link's window in flight.
While the broker is away, or the window is full, messages wait in a bounded outbox
(drop-oldest, by count, bytes and age). What was in flight when a connection went goes back to
the front of the outbox and is sent again (at-least-once).

Broker to bus: the link's message callback resolves the routes; after each read batch the
frames ``<topic> <payload>`` go to a PUB socket on the bus with NOBLOCK, back to back; at the
high-water mark a message is dropped and counted. Only then is the message acknowledged to the
link (Kafka offsets, XACK, AMQP acks).

Payloads pass byte for byte. Loops are stopped by a fingerprint set of what this uplink put on
the bus (so it never goes back to the broker it came from), and of what it published where the
broker echoes our own publications (MQTT 3.1.1, Redis, Kafka; MQTT 5's no-local stops them at
the broker). Two uplinks to one broker whose routes would carry a topic round are refused by
the configuration. Connection: exponential back-off with jitter; MQTT adds a retained presence
topic with a last will. See docs/uplinks.md for the user's view.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from argentic_edge.bridge.durable import DurableOutbox
from argentic_edge.bridge.link import (
    Acknowledge,
    ConnectError,
    Link,
    LinkCallbacks,
    LinkError,
    LinkSession,
    Publication,
)
from argentic_edge.bridge.loopguard import LoopGuard
from argentic_edge.bridge.outbox import Outbox, Outgoing
from argentic_edge.bridge.routes import Counters, InDelivery, RouteTable, mqtt_topic_problem
from argentic_edge.bus.proxy import BusEndpoints, apply_socket_options
from argentic_edge.bus.reader import BusReader
from argentic_edge.config import BusConfig, UplinkConfig
from argentic_edge.storage import outbox_path

__all__ = ["LinkFactory", "Uplink", "UplinkStatus", "backoff_delay", "presence_topic"]

log = logging.getLogger(__name__)

BACKOFF_CAP = 60.0  # seconds; never wait longer between attempts (unless connect_retry_delay is)
STABLE_AFTER = 30.0  # a connection that held this long resets the back-off
BATCH = 1024  # bus frames handled per wake-up before other tasks get a turn
CPU_SHARE = 0.9  # of one core for reading the bus: forwarding is this service's whole job, but
# a flood beyond it must still leave the loop time for keepalives and the web server
SUB_HIGH_WATER_MARK = 100_000  # frames queued for the uplink before the bus drops for it
STOP_TIMEOUT = 2.0  # seconds to deliver the offline status and what is in flight
CANCEL_AGAIN_AFTER = 0.1  # seconds before a task that is still running is cancelled again

CONNECTING = "connecting"
CONNECTED = "connected"
WAITING = "waiting for broker"
BACKING_OFF = "backing off"
GAVE_UP = "gave up"
STOPPED = "stopped"

DROP_REASONS = {
    "space_in_topic": "broker messages whose topic contains a space (the bus frame is "
    "'<topic> <json>')",
    "empty_level": "broker messages whose topic has an empty level ('a//b', '/a', 'a/')",
    "nul_in_topic": "messages whose topic contains NUL",
    "forbidden_character": "bus messages whose topic has a control character or a Unicode "
    "non-character (MQTT brokers disconnect for them)",
    "topic_too_long": "messages whose topic is longer than 65535 bytes",
    "invalid_utf8": "messages whose topic is not valid UTF-8",
    "wildcard_in_topic": "bus messages whose topic contains + or # (MQTT topic names cannot)",
    "too_large": "messages larger than max_payload",
    "malformed_frame": "bus frames that are not '<topic> <payload>'",
    "bus_full": "broker messages the bus could not take (high-water mark reached)",
    "buffer_full": "bus messages pushed out of the full outbox (buffer)",
    "expired": "bus messages that waited in the outbox longer than buffer.max_age",
    "broker_refused": "publications the broker refused",
    "not_connected": "QoS 0 publications caught by a lost connection",
    "kafka_name_too_long": "bus messages whose topic is longer than Kafka's 249 characters once "
    "mapped (docs/kafka.md)",
    "kafka_name_reserved": "bus messages whose topic would be a name Kafka keeps for itself "
    "('.', '..', '__...')",
    "kafka_name_undecodable": "bus messages whose topic is not valid UTF-8 text for a Kafka name",
}

LinkFactory = Callable[[LinkCallbacks, int], Link]
"""Makes the uplink's link: (callbacks, fallback) where ``fallback`` counts the times the broker
asked for an older protocol variant (ConnectError(fallback=True): MQTT 5 -> 3.1.1)."""


def presence_topic(node_name: str) -> str:
    """Retained ``online``/``offline`` status of this appliance on an MQTT broker."""
    return f"argentic/edge/{node_name}/status"


def backoff_delay(
    attempt: int, base: float, cap: float = BACKOFF_CAP, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before attempt ``attempt + 1``: base, 2*base, 4*base... up to the cap, +-25 %.

    The jitter keeps several appliances that lost the same broker from all coming back in
    the same instant.
    """
    cap = max(cap, base)
    schedule = min(cap, base * 2 ** min(attempt - 1, 32))
    return float(min(cap, schedule * (0.75 + 0.5 * rand())))


EXAMPLE_CHARS = 120  # a hostile topic can be 64 KiB; the log shows its beginning


class DropLog:
    """One warning per kind of dropped message, then only counting: a flood of bad messages
    must not become a flood of log lines, nor one huge topic a huge line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._seen: set[str] = set()

    def note(self, reason: str, example: str) -> None:
        if reason not in self._seen:
            self._seen.add(reason)
            if len(example) > EXAMPLE_CHARS:
                example = f"{example[:EXAMPLE_CHARS]}... ({len(example)} characters)"
            log.warning(
                "%s: dropping %s, e.g. %s; counted in the status from now on, not logged again",
                self.label,
                DROP_REASONS.get(reason, reason),
                example,
            )


def _reason(problem: str) -> tuple[str, str | None]:
    """A link's settle problem as (reason key, detail): ``"broker_refused: 'a/b': ..."``."""
    key, _, detail = problem.partition(": ")
    if key in DROP_REASONS:
        return key, detail or None
    return "broker_refused", problem


def _not_utf8(topic: str) -> bool:
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:  # the link passed bad bytes as surrogates (link.py)
        return True
    return False


@dataclass(frozen=True)
class UplinkStatus:
    """One uplink's entry in the status document's ``uplinks`` list."""

    name: str
    protocol: str
    enabled: bool
    state: str
    detail: str
    broker: str | None
    session: str | None
    tls: bool
    presence_topic: str | None
    last_error: str | None
    attempts: int
    connections: int
    connected_for: float | None
    in_flight: int
    window: int | None
    buffer: dict[str, Any]
    routes: list[dict[str, Any]]
    subscription_problems: dict[str, str]
    unrouted_drops: dict[str, dict[str, int]]
    loop_guard: dict[str, dict[str, int]]
    bus_reader: dict[str, Any] | None
    link: dict[str, Any]
    notes: list[str]


class Uplink:
    """The ``uplink:<name>`` service: ``await start()``, ``await stop()``, ``health()``,
    ``status()``.

    Extras for other services: ``await publish_retained(topic, payload)``,
    ``on_connect(callback)`` to run a coroutine after every (re)connection, and
    ``listen(topic, callback)`` for the appliance's own commands from the broker.
    """

    def __init__(
        self,
        uplink: UplinkConfig,
        messaging: BusConfig,
        *,
        make_link: LinkFactory,
        context: zmq.Context[Any],
        endpoints: BusEndpoints,
        presence: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.config = uplink
        self.uplink_name = uplink.name
        self.name = f"uplink:{uplink.name}"
        self.protocol = uplink.protocol
        self.messaging = messaging
        self.context = context
        self.endpoints = endpoints
        self.presence_topic = presence
        self._make_link = make_link
        settings = uplink.link
        self.configured = getattr(settings, "broker_address", "") is not None
        self.where = f"{getattr(settings, 'broker_address', '')}:{getattr(settings, 'port', '')}"
        self.retry_delay = float(getattr(settings, "connect_retry_delay", 5.0))
        self.max_attempts = int(getattr(settings, "max_reconnect_attempts", 0))
        self.routes = RouteTable(uplink.routes, settings)
        self.max_payload = uplink.max_payload
        self.encoding = messaging.topic_encoding
        self.outbox = self._make_outbox(data_dir)
        # The uplink's own messages (presence, publish_retained): few, sent before the outbox,
        # and never pushed out by bus traffic.
        self._priority: deque[Outgoing] = deque()
        self.bus_guard = LoopGuard()
        self.broker_guard = LoopGuard()
        self._label = f"uplink {uplink.name}"
        self._drops = DropLog(self._label)
        self._unrouted: dict[str, Counter[str]] = {"from_bus": Counter(), "from_broker": Counter()}

        self.state = STOPPED
        self.last_error: str | None = None
        self.attempts = 0
        self.connections = 0
        self.connected_since: float | None = None
        self._next_attempt_at: float | None = None
        self._gave_up_reason: str | None = None
        self._subscription_problems: dict[str, str] = {}
        self._said: str | None = None  # the failure logged last (said once while it repeats)

        self._fallback = 0
        self._link: Link | None = None
        self._session: LinkSession | None = None
        self._online = False
        self._echoes = True
        self._window = 1
        self._inflight: dict[Outgoing, None] = {}  # QoS>=1 handed to the link, in order
        self._to_bus: list[tuple[InDelivery, bytes]] = []
        self._acks: list[Acknowledge] = []
        self._hooks: list[Callable[[], Awaitable[None]]] = []
        self._listeners: dict[str, Callable[[bytes], None]] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._lost: asyncio.Future[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pub: zmq.Socket[bytes] | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._reader: BusReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks = LinkCallbacks(
            on_message=self._from_broker, on_settled=self._settled, on_lost=self._connection_lost
        )

    @property
    def link(self) -> Link | None:
        """The current link (None before the first attempt)."""
        return self._link

    def _make_outbox(self, data_dir: Path | None) -> Outbox:
        """On disk with ``buffer.durable`` (the default) where there is a data directory to keep
        it in, else in memory. A file left by an earlier run is read now: what waited is sent
        first, its routes' counters given back where the route still exists."""
        buffer = self.config.buffer
        if not buffer.durable or data_dir is None:
            return Outbox(buffer.max_messages, buffer.max_bytes, buffer.max_age)
        return DurableOutbox(
            outbox_path(data_dir, self.uplink_name),
            buffer.max_messages,
            buffer.max_bytes,
            buffer.max_age,
            counters=self._route_counters,
        )

    def _route_counters(self, key: str) -> Counters:
        """The counters of the outbound route a stored message came through; a route that is
        gone gets counters of its own, shown nowhere, so the message is still sent and settled
        like any other."""
        route = self.routes.by_key(key)
        return route.counters_out if route is not None else Counters()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for note in self.config.notes:
            log.warning("%s: %s", self._label, note)
        if not self.configured:
            self.state = WAITING
            log.info("%s: no broker configured (broker_address); waiting", self._label)
            return
        self._open_bus()
        self.state = CONNECTING
        assert self._reader is not None
        self._tasks = [
            asyncio.create_task(self._reader.run(), name=f"{self.name}-bus-reader"),
            asyncio.create_task(self._run(), name=f"{self.name}-connection"),
        ]

    def _open_bus(self) -> None:
        """A PUB for broker-to-bus traffic and a SUB for bus-to-broker, on the shared context."""
        bus_config = self.messaging
        pub = self.context.socket(zmq.PUB)
        async_context = zmq.asyncio.Context.shadow(self.context.underlying)
        sub = async_context.socket(zmq.SUB)
        try:
            apply_socket_options(pub, bus_config)
            pub.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue says EAGAIN, not silence
            pub.setsockopt(zmq.LINGER, 0)
            pub.connect(self.endpoints.local_publish)
            apply_socket_options(sub, bus_config)
            sub.setsockopt(zmq.RCVHWM, max(bus_config.high_water_mark, SUB_HIGH_WATER_MARK))
            sub.setsockopt(zmq.LINGER, 0)
            for prefix in self.routes.bus_prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode(self.encoding))
            sub.connect(self.endpoints.local_subscribe)
        except zmq.ZMQError as exc:
            pub.close(linger=0)
            sub.close(linger=0)
            raise LinkError(
                f"{self._label} cannot join the bus at "
                f"{self.endpoints.local_publish} and "
                f"{self.endpoints.local_subscribe}: {exc}"
            ) from None
        self._pub, self._sub = pub, sub
        # discard_stale=False: what waits in the queue is still worth forwarding
        self._reader = BusReader(
            sub, self._from_bus, name=self.name, share=CPU_SHARE, discard_stale=False, batch=BATCH
        )

    async def stop(self) -> None:
        """Say ``offline`` (retained), let what is in flight land, disconnect cleanly."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await self._ended(task)
        self._tasks = []
        for task in list(self._hook_tasks):
            task.cancel()
        link = self._link
        if link is not None:
            if self._online and self.presence_topic is not None:
                await self._say_offline()
            try:
                await link.close()
            except Exception:
                log.exception("%s: the link did not close cleanly", self._label)
        self._online = False
        self._end_waiting()
        self._send_to_bus()  # what the last read brought, before the socket goes
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._sub = None
        self.state = STOPPED
        self.connected_since = None

    async def _ended(self, task: asyncio.Task[None]) -> None:
        """Until ``task`` has ended, cancelling it again while it runs: Python 3.11's
        ``wait_for`` swallows a cancellation that comes in the instant its future completes (a
        broker refusing the connection just as the appliance stops), and the connection task
        would go on backing off and retrying with nobody left to stop it."""
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_AGAIN_AFTER)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: a task failed while stopping",
                self._label,
                exc_info=task.exception(),
            )

    def _end_waiting(self) -> None:
        """What has not reached the broker: kept on disk by a durable outbox, else dropped."""
        waiting = [] if self.outbox.durable else self.outbox.clear()
        if waiting:
            log.warning(
                "%s: stopping with %d bus message(s) still waiting for the broker; "
                "they are dropped",
                self._label,
                len(waiting),
            )
        waiting += list(self._priority) + list(self._inflight)
        self._priority.clear()
        self._inflight.clear()
        for item in waiting:
            if item.done is not None and not item.done.done():
                item.done.set_exception(LinkError("the uplink stopped before the broker had it"))
        self.outbox.close()

    async def _say_offline(self) -> None:
        assert self._loop is not None and self.presence_topic is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._submit(
            Outgoing(self.presence_topic, b"offline", 1, True, None, done),
            echo=self._echo_on_broker(self.presence_topic),
            priority=True,
        )
        try:
            await asyncio.wait_for(done, STOP_TIMEOUT)
        except (TimeoutError, LinkError) as exc:
            log.warning(
                "%s: could not publish the offline status: %s",
                self._label,
                exc or "no acknowledgement in time",
            )

    # --- the connection -----------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, stay connected until the link drops, back off, repeat (or give up)."""
        loop = asyncio.get_running_loop()
        while True:
            self.state = CONNECTING
            self._next_attempt_at = None
            self._lost = loop.create_future()
            try:
                await self._connect_once()
            except ConnectError as exc:
                if exc.fallback:
                    log.info("%s: %s; trying the older protocol variant", self._label, exc)
                    self._fallback += 1
                    await self._drop_link()
                    continue
                failure = str(exc)
            except LinkError as exc:
                failure = str(exc)
            except Exception as exc:
                log.exception("%s: unexpected error while connecting", self._label)
                failure = f"internal error: {exc}"
            else:
                failure = await self._lost
                if (
                    self.connected_since is not None
                    and time.monotonic() - self.connected_since >= STABLE_AFTER
                ):
                    self.attempts = 0
                    self._said = None
                self.connected_since = None
            self.attempts += 1
            repeated, self._said = failure == self._said, failure
            self.last_error = failure
            if self.max_attempts and self.attempts >= self.max_attempts:
                self.state = GAVE_UP
                self._gave_up_reason = f"gave up after {self.attempts} attempts: {failure}"
                log.error("%s: %s", self._label, self._gave_up_reason)
                return
            delay = backoff_delay(self.attempts, self.retry_delay)
            self.state = BACKING_OFF
            self._next_attempt_at = time.monotonic() + delay
            # The same failure again before a connection held (a broker that stays down, a
            # client id taken over again and again) is said once; the status keeps counting.
            log.log(
                logging.DEBUG if repeated else logging.WARNING,
                "%s: %s; next attempt in %.1fs",
                self._label,
                failure,
                delay,
            )
            await asyncio.sleep(delay)

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def _connect_once(self) -> None:
        if self._link is None:
            self._link = self._make_link(self._callbacks, self._fallback)
            self.where = self._link.where
        link = self._link
        try:
            session = await link.connect()
            problems = await link.subscribe(
                [(sub.filter.value, sub.qos) for sub in self.routes.subscriptions]
                + [(topic, 1) for topic in self._listeners]
            )
        except BaseException:
            link.abort()
            raise
        self._check_subscriptions(problems)
        self._went_online(session)

    def _check_subscriptions(self, problems: dict[str, str]) -> None:
        for topic_filter, problem in problems.items():
            if self._subscription_problems.get(topic_filter) != problem:
                log.warning(
                    "%s: %s to %r; nothing arrives through it", self._label, problem, topic_filter
                )
        self._subscription_problems = dict(problems)

    def _went_online(self, session: LinkSession) -> None:
        self._session = session
        self._window = max(1, session.window)
        self._echoes = session.echoes
        self.state = CONNECTED
        self.last_error = None
        self.connections += 1
        self.connected_since = time.monotonic()
        self._online = True
        self.outbox.connected(True)
        log.info(
            "%s: connected to %s (%s%s)",
            self._label,
            self.where,
            session.description,
            ", session resumed" if session.resumed else "",
        )
        if self.presence_topic is not None:
            self._priority.appendleft(
                Outgoing(
                    self.presence_topic,
                    b"online",
                    1,
                    True,
                    echo=self._echo_on_broker(self.presence_topic),
                )
            )
        self._flush()
        for hook in self._hooks:
            self._start_hook(hook)

    def _connection_lost(self, reason: str) -> None:
        """The link's on_lost: what was in flight goes back to the front, in order."""
        self._online = False
        inflight = list(self._inflight)
        self._inflight.clear()
        own = [item for item in inflight if item.counters is None]
        self._priority.extendleft(reversed(own))
        routed = [item for item in inflight if item.counters is not None]
        for item in routed:
            self._uncount(item)  # counted again when it is sent again
        self.outbox.requeue(routed)
        self.outbox.connected(False)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    async def _run_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        try:
            await hook()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "%s: an on_connect callback (%s) failed",
                self._label,
                getattr(hook, "__qualname__", hook),
            )

    # --- bus to broker ------------------------------------------------------------------------

    def _from_bus(self, frame: bytes) -> None:
        topic_bytes, space, payload = frame.partition(b" ")
        if not space or not topic_bytes:
            self._drop_unrouted("from_bus", "malformed_frame", repr(frame[:60]))
            return
        try:
            topic = topic_bytes.decode(self.encoding)
        except UnicodeDecodeError:
            self._drop_unrouted("from_bus", "invalid_utf8", repr(topic_bytes[:60]))
            return
        if self.bus_guard.consume(topic, payload):
            return
        for delivery in self.routes.outbound(topic):
            route = delivery.route
            counters = route.counters_out
            if self._passes(counters, delivery.problem, topic, payload):
                self._submit(
                    Outgoing(
                        delivery.topic,
                        payload,
                        delivery.qos,
                        delivery.retain,
                        counters,
                        route_key=route.key,
                    ),
                    echo=delivery.echo_expected,
                )

    def _submit(self, item: Outgoing, *, echo: bool, priority: bool = False) -> None:
        """Publish now if the broker can take it, else queue it behind what already waits."""
        if (
            self._online
            and not self.outbox
            and not self._priority
            and (item.qos == 0 or len(self._inflight) < self._window)
        ):
            if item.qos and item.counters is not None:
                self.outbox.track(item)  # on disk until acknowledged, as if it had waited
            self._send(item, echo)
            return
        item.echo = echo
        if priority:
            self._priority.append(item)
            return
        if item.counters is not None:
            item.counters.buffered += 1
        for dropped in self.outbox.append(item):
            self._lose(dropped, "expired" if self._expired(dropped) else "buffer_full")

    def _expired(self, item: Outgoing) -> bool:
        return time.time() - item.created > self.outbox.max_age

    def _flush(self) -> None:
        """Send queued messages in order while the broker's window has room."""
        priority, outbox = self._priority, self.outbox
        for dropped in outbox.expire():
            self._lose(dropped, "expired")
        while self._online:
            if priority:
                item, take = priority[0], priority.popleft
            elif outbox:
                item, take = outbox.peek(), outbox.popleft
            else:
                return
            if item.qos and len(self._inflight) >= self._window:
                return
            take()
            self._send(item, item.echo)

    def _send(self, item: Outgoing, echo: bool) -> None:
        """Hand it to the link; counted as carried now (a refusal later counts as a drop too,
        a message the link never wrote is taken off again)."""
        assert self._link is not None
        if item.qos:
            self._inflight[item] = None
        counters = item.counters
        if counters is not None:
            counters.messages += 1
            counters.bytes += len(item.payload)
        if echo and self._echoes:
            self.broker_guard.add(item.topic, item.payload)
        self._link.publish(Publication(item.topic, item.payload, item.qos, item.retain, item))

    def _settled(self, token: object, problem: str | None) -> None:
        """The link's on_settled: count it, tell a waiting caller, make room in the window."""
        assert isinstance(token, Outgoing)
        item = token
        if item.qos:
            self._inflight.pop(item, None)
        if item.counters is not None:
            self.outbox.done(item)
        if problem is not None:
            reason, detail = _reason(problem)
            if reason == "not_connected":
                self._uncount(item)
            self._lose(item, reason, detail)
        elif item.done is not None and not item.done.done():
            item.done.set_result(None)
        if item.qos and (self._priority or self.outbox):
            self._flush()

    @staticmethod
    def _uncount(item: Outgoing) -> None:
        if item.counters is not None:
            item.counters.messages -= 1
            item.counters.bytes -= len(item.payload)

    def _lose(self, item: Outgoing, reason: str, example: str | None = None) -> None:
        if item.counters is not None:
            self._drop(item.counters, reason, example or repr(item.topic))
        else:
            self._drops.note(reason, example or repr(item.topic))
        if item.done is not None and not item.done.done():
            item.done.set_exception(LinkError(f"{DROP_REASONS[reason]}: {item.topic!r}"))

    # --- broker to bus ------------------------------------------------------------------------

    def _from_broker(self, topic: str, payload: bytes, ack: Acknowledge | None) -> None:
        """The link's on_message. Acknowledged once on the bus with the batch it came in
        (``_send_to_bus``), in order: a message that goes nowhere is acknowledged at once only
        when nothing before it still waits."""
        listener = self._listeners.get(topic)
        if listener is not None:  # the appliance's own command, not traffic for the bus
            listener(payload)
        elif not topic.isascii() and _not_utf8(topic):
            self._drop_unrouted("from_broker", "invalid_utf8", ascii(topic[:60]))
        elif not (self._echoes and self.broker_guard.consume(topic, payload)):
            for delivery in self.routes.inbound(topic).deliveries:
                if self._passes(delivery.route.counters_in, delivery.problem, topic, payload):
                    if not self._to_bus:
                        assert self._loop is not None
                        self._loop.call_soon(self._send_to_bus)
                    self._to_bus.append((delivery, payload))
        if ack is not None:
            if self._to_bus:
                self._acks.append(ack)
            else:
                ack()

    def _send_to_bus(self) -> None:
        """Put what the last read from the broker brought on the bus, back to back.

        The first frame wakes the bus's proxy thread (about 10 us when it sleeps); frames right
        behind it cost about 1 us. Sending after the link's read batch instead of one by one
        saves most wake-ups under load and delays nothing when messages come one at a time.
        """
        batch, self._to_bus = self._to_bus, []
        acks, self._acks = self._acks, []
        pub = self._pub
        if pub is None:
            return
        for delivery, payload in batch:
            counters = delivery.route.counters_in
            try:
                pub.send(delivery.frame_head + payload, zmq.NOBLOCK)
            except zmq.Again:
                self._drop(counters, "bus_full", repr(delivery.topic))
                continue
            counters.messages += 1
            counters.bytes += len(payload)
            if delivery.echo_expected:
                self.bus_guard.add(delivery.topic, payload)
        for ack in acks:
            ack()

    # --- counting -----------------------------------------------------------------------------

    def _passes(self, counters: Counters, problem: str | None, topic: str, payload: bytes) -> bool:
        """False (and counted) if the topic cannot exist on the other side or the payload is
        over max_payload."""
        if problem is not None:
            self._drop(counters, problem, repr(topic))
            return False
        if len(payload) > self.max_payload:
            self._drop(counters, "too_large", f"{len(payload)} bytes on {topic!r}")
            return False
        return True

    def _drop(self, counters: Counters, reason: str, example: str) -> None:
        counters.dropped[reason] += 1
        self._drops.note(reason, example)

    def _drop_unrouted(self, side: str, reason: str, example: str) -> None:
        self._unrouted[side][reason] += 1
        self._drops.note(reason, example)

    # --- for other services -------------------------------------------------------------------

    def on_connect(self, callback: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Run ``await callback()`` after every (re)connection; returns a function to undo it.

        If the uplink is connected already, the callback also runs now.
        """
        self._hooks.append(callback)
        if self._online:
            self._start_hook(callback)

        def remove() -> None:
            if callback in self._hooks:
                self._hooks.remove(callback)

        return remove

    def listen(self, topic: str, callback: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``callback(payload)`` for each message on the broker's ``topic`` (a topic name,
        no wildcards): subscribed on every connection, never routed to the bus. Returns a
        function to undo it (the subscription then lasts until the next connection)."""
        self._listeners[topic] = callback
        link = self._link
        if self._online and link is not None:

            async def subscribe_now() -> None:
                problems = await link.subscribe([(topic, 1)])
                if problems:
                    self._check_subscriptions({**self._subscription_problems, **problems})

            self._start_hook(subscribe_now)

        def remove() -> None:
            self._listeners.pop(topic, None)

        return remove

    def _start_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self._run_hook(hook), name=f"{self.name}-on-connect")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    async def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish a retained message and wait until the broker has it (QoS>=1) or it is written.

        Raises LinkError when the broker is not connected (use ``on_connect`` to publish on
        every connection), for a topic MQTT cannot carry, or if the message is lost.
        """
        problem = mqtt_topic_problem(topic) if topic else "empty topic"
        if problem is not None:
            raise LinkError(f"cannot publish to {topic!r}: {DROP_REASONS.get(problem, problem)}")
        if not self._online or self._loop is None:
            raise LinkError(f"{self._label} is not connected to a broker ({self.state})")
        done: asyncio.Future[None] = self._loop.create_future()
        self._submit(
            Outgoing(topic, payload, qos, True, None, done),
            echo=self._echo_on_broker(topic),
            priority=True,
        )
        await done

    def _echo_on_broker(self, topic: str) -> bool:
        return self.routes.subscribed(topic)

    # --- health and status --------------------------------------------------------------------

    @property
    def detail(self) -> str:
        """The state in a few words, as the status page shows it."""
        if self.state == WAITING:
            return "waiting for broker (no broker configured)"
        if self.state == BACKING_OFF and self._next_attempt_at is not None:
            remaining = max(0.0, self._next_attempt_at - time.monotonic())
            return f"backing off (next attempt in {remaining:.1f}s)"
        if self.state == GAVE_UP and self._gave_up_reason:
            return self._gave_up_reason
        if self.state == CONNECTED and self._session is not None:
            return f"connected to {self.where} ({self._session.description})"
        if self.state == CONNECTING:
            return f"connecting to {self.where}"
        return self.state

    def health(self) -> tuple[bool, str]:
        """Up when connected. No broker configured counts as up: the appliance is doing what it
        was told (a missing broker is a setting, not a failure, and restarting cannot fix it)."""
        if self.state in (CONNECTED, WAITING):
            return True, self.detail
        reason = self.detail
        if self.last_error and self.state != GAVE_UP:
            reason = f"{reason}; last error: {self.last_error}"
        return False, reason

    def status(self) -> UplinkStatus:
        session = self._session
        connected = self.state == CONNECTED
        return UplinkStatus(
            name=self.uplink_name,
            protocol=self.protocol,
            enabled=True,
            state=self.state,
            detail=self.detail,
            broker=self.where if self.configured else None,
            session=session.description if session and connected else None,
            tls=getattr(self.config.link, "tls_params", None) is not None,
            presence_topic=self.presence_topic,
            last_error=self.last_error,
            attempts=self.attempts,
            connections=self.connections,
            connected_for=(
                time.monotonic() - self.connected_since
                if self.connected_since is not None
                else None
            ),
            in_flight=len(self._inflight),
            window=self._window if connected else None,
            buffer=self.outbox.stats(),
            routes=self.routes.describe(),
            subscription_problems=dict(self._subscription_problems),
            unrouted_drops={side: dict(counts) for side, counts in self._unrouted.items()},
            loop_guard={"bus": self.bus_guard.stats(), "broker": self.broker_guard.stats()},
            bus_reader=self._reader.status() if self._reader is not None else None,
            link=self._link.status() if self._link is not None else {},
            notes=list(self.config.notes),
        )
