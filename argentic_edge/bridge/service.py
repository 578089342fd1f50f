"""The MQTT bridge: the local ZeroMQ bus and an MQTT broker, joined by routes.

Bus to broker: a SUB socket on the bus (one libzmq subscription per outbound route prefix) is
read through ``BusReader`` (bus/reader.py): in batches, on a CPU budget high enough for the
bridge's full rate (past it the reader pauses and its queue buffers; falling a whole queue
behind, where libzmq drops, shows as ``bus_reader.queue_full``). Each frame is matched to its
routes (a cached topic-tree lookup), rewritten to the broker topic and handed to paho without
waiting for the broker: QoS 0 goes straight to the socket, QoS>=1 keeps up to the broker's
receive maximum in flight. While the broker is away, or
its window is full, messages wait in a bounded outbox (drop-oldest).

Broker to bus: paho's message callback resolves the routes; after each read batch the frames
``<topic> <payload>`` go to a PUB socket on the bus with NOBLOCK, back to back; at the
high-water mark a message is dropped and counted.

Payloads pass byte for byte. Loops are stopped by MQTT 5 no-local subscriptions and by a
fingerprint set of what the bridge injected on each side (loopguard.py). Connection: exponential
back-off with jitter, a persistent session when ``clean_session`` is false, a retained presence
topic with a last will. See README.md, "MQTT bridge", for the user's view.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as paho
import zmq
import zmq.asyncio
from paho.mqtt.reasoncodes import ReasonCode

from argentic_edge.bridge.loopguard import LoopGuard
from argentic_edge.bridge.mqtt import BridgeError, ConnectError, MqttLink, Session
from argentic_edge.bridge.outbox import Outbox, Outgoing
from argentic_edge.bridge.routes import Counters, InDelivery, RouteTable, mqtt_topic_problem
from argentic_edge.bus.proxy import BusEndpoints, apply_socket_options
from argentic_edge.bus.reader import BusReader
from argentic_edge.config import BridgeConfig, BusConfig

__all__ = ["Bridge", "BridgeError", "backoff_delay", "presence_topic"]

log = logging.getLogger(__name__)

BACKOFF_CAP = 60.0  # seconds; never wait longer between attempts (unless connect_retry_delay is)
STABLE_AFTER = 30.0  # a connection that held this long resets the back-off
MAX_WINDOW = 1000  # QoS>=1 publications in flight, when the broker allows that many
BATCH = 1024  # bus frames handled per wake-up before other tasks get a turn
CPU_SHARE = 0.9  # of one core for reading the bus: forwarding is this service's whole job, but
# a flood beyond it must still leave the loop time for paho's keepalives and the web server
SUB_HIGH_WATER_MARK = 100_000  # frames queued for the bridge before the bus drops for it
STOP_TIMEOUT = 2.0  # seconds to deliver the offline status and what is in flight

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
    "too_large": "messages larger than bridge.max_payload",
    "malformed_frame": "bus frames that are not '<topic> <payload>'",
    "bus_full": "broker messages the bus could not take (high-water mark reached)",
    "buffer_full": "bus messages pushed out of the full outbox (bridge.buffer)",
    "broker_refused": "publications the broker refused",
    "not_connected": "QoS 0 publications caught by a lost connection",
}


def presence_topic(node_name: str) -> str:
    """Retained ``online``/``offline`` status of this appliance on the broker."""
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

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def note(self, reason: str, example: str) -> None:
        if reason not in self._seen:
            self._seen.add(reason)
            if len(example) > EXAMPLE_CHARS:
                example = f"{example[:EXAMPLE_CHARS]}... ({len(example)} characters)"
            log.warning(
                "bridge: dropping %s, e.g. %s; counted in the status from now on, not logged again",
                DROP_REASONS.get(reason, reason),
                example,
            )


@dataclass(frozen=True)
class BridgeStatus:
    """The ``bridge`` section of the status document."""

    enabled: bool
    state: str
    detail: str
    broker: str | None
    client_id: str
    protocol: str | None
    tls: bool
    clean_session: bool
    presence_topic: str
    last_error: str | None
    attempts: int
    connections: int
    connected_for: float | None
    in_flight: int
    window: int | None
    buffer: dict[str, int]
    routes: list[dict[str, Any]]
    subscription_problems: dict[str, str]
    unrouted_drops: dict[str, dict[str, int]]
    overlap_duplicates_skipped: int
    loop_guard: dict[str, dict[str, int]]
    bus_reader: dict[str, Any] | None


class Bridge:
    """The ``bridge`` service: ``await start()``, ``await stop()``, ``health()``, ``status()``.

    Extras for other services: ``await publish_retained(topic, payload)``,
    ``on_connect(callback)`` to run a coroutine after every (re)connection, and
    ``listen(topic, callback)`` for the appliance's own commands from the broker.
    """

    name = "bridge"

    def __init__(
        self,
        config: BridgeConfig,
        messaging: BusConfig,
        *,
        node_name: str,
        client_id: str,
        context: zmq.Context[Any],
        endpoints: BusEndpoints,
    ) -> None:
        self.messaging = messaging
        self.mqtt = config.mqtt
        self.context = context
        self.endpoints = endpoints
        self.client_id = client_id
        self.presence_topic = presence_topic(node_name)
        self.where = f"{self.mqtt.broker_address}:{self.mqtt.port}"
        self.routes = RouteTable(config.routes, self.mqtt)
        self.max_payload = config.max_payload
        self.encoding = messaging.topic_encoding
        self.outbox = Outbox(config.buffer.max_messages, config.buffer.max_bytes)
        # The bridge's own messages (presence, publish_retained): few, sent before the outbox,
        # and never pushed out by bus traffic.
        self._priority: deque[Outgoing] = deque()
        self.bus_guard = LoopGuard()
        self.mqtt_guard = LoopGuard()
        self._drops = DropLog()
        self._unrouted: dict[str, Counter[str]] = {"from_bus": Counter(), "from_broker": Counter()}
        self._duplicates = 0

        self.state = STOPPED
        self.last_error: str | None = None
        self.attempts = 0
        self.connections = 0
        self.connected_since: float | None = None
        self._next_attempt_at: float | None = None
        self._gave_up_reason: str | None = None
        self._subscription_problems: dict[str, str] = {}

        self._mqtt5 = True
        self._link: MqttLink | None = None
        self._session: Session | None = None
        self._online = False
        self._window = 1
        self._inflight: dict[int, tuple[paho.MQTTMessageInfo, Outgoing]] = {}
        # QoS 0 publications handed to paho and not yet written to its socket, oldest first:
        # paho forgets them when the connection goes, so they are counted lost here.
        self._unwritten: deque[tuple[paho.MQTTMessageInfo, Outgoing]] = deque()
        self._acked: list[tuple[int, ReasonCode]] = []
        self._to_bus: list[tuple[InDelivery, bytes]] = []
        self._dedupe = False
        self._hooks: list[Callable[[], Awaitable[None]]] = []
        self._listeners: dict[str, Callable[[bytes], None]] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._lost: asyncio.Future[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pub: zmq.Socket[bytes] | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._reader: BusReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.mqtt.broker_address is None:
            self.state = WAITING
            log.info("bridge: no broker configured (bridge.mqtt.broker_address); waiting")
            return
        self._open_bus()
        self.state = CONNECTING
        assert self._reader is not None
        self._tasks = [
            asyncio.create_task(self._reader.run(), name="bridge-bus-reader"),
            asyncio.create_task(self._run(), name="bridge-connection"),
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
            raise BridgeError(
                f"the bridge cannot join the bus at "
                f"{self.endpoints.local_publish} and "
                f"{self.endpoints.local_subscribe}: {exc}"
            ) from None
        self._pub, self._sub = pub, sub
        # discard_stale=False: what waits in the queue is still worth forwarding
        self._reader = BusReader(
            sub, self._from_bus, name="bridge", share=CPU_SHARE, discard_stale=False, batch=BATCH
        )

    async def stop(self) -> None:
        """Say ``offline`` (retained), let what is in flight land, disconnect cleanly."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("bridge: a task failed while stopping")
        self._tasks = []
        for task in list(self._hook_tasks):
            task.cancel()
        link = self._link
        if link is not None and link.connected and self._online:
            await self._say_offline()
            await link.disconnect()
        if link is not None:
            link.close()
        self._online = False
        waiting = self.outbox.clear()
        if waiting:
            log.warning(
                "bridge: stopping with %d bus message(s) still waiting for the broker; "
                "they are dropped",
                len(waiting),
            )
        waiting += list(self._priority) + [item for _, item in self._inflight.values()]
        self._priority.clear()
        for item in waiting:
            if item.done is not None and not item.done.done():
                item.done.set_exception(BridgeError("the bridge stopped before the broker had it"))
        self._inflight.clear()
        self._send_to_bus()  # what the last read brought, before the socket goes
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._sub = None
        self.state = STOPPED
        self.connected_since = None

    async def _say_offline(self) -> None:
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._submit(
            Outgoing(self.presence_topic, b"offline", 1, True, None, done),
            echo=self._echo_on_broker(self.presence_topic),
            priority=True,
        )
        try:
            await asyncio.wait_for(done, STOP_TIMEOUT)
        except (TimeoutError, BridgeError) as exc:
            log.warning(
                "bridge: could not publish the offline status: %s",
                exc or "no acknowledgement in time",
            )

    # --- the connection -----------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, stay connected until the link drops, back off, repeat (or give up)."""
        loop = asyncio.get_running_loop()
        limit = self.mqtt.max_reconnect_attempts
        while True:
            self.state = CONNECTING
            self._next_attempt_at = None
            self._lost = loop.create_future()
            try:
                await self._connect_once()
            except ConnectError as exc:
                if exc.protocol_refused:
                    log.info("bridge: %s does not speak MQTT 5; using MQTT 3.1.1", self.where)
                    self._mqtt5 = False
                    if self._link is not None:
                        self._link.close()
                    self._link = None
                    continue
                failure = str(exc)
            except BridgeError as exc:
                failure = str(exc)
            except Exception as exc:
                log.exception("bridge: unexpected error while connecting")
                failure = f"internal error: {exc}"
            else:
                failure = await self._lost
                self._online = False
                if (
                    self.connected_since is not None
                    and time.monotonic() - self.connected_since >= STABLE_AFTER
                ):
                    self.attempts = 0
                self.connected_since = None
            self.attempts += 1
            self.last_error = failure
            if limit and self.attempts >= limit:
                self.state = GAVE_UP
                self._gave_up_reason = f"gave up after {self.attempts} attempts: {failure}"
                log.error("bridge: %s", self._gave_up_reason)
                return
            delay = backoff_delay(self.attempts, self.mqtt.connect_retry_delay)
            self.state = BACKING_OFF
            self._next_attempt_at = time.monotonic() + delay
            log.warning("bridge: %s; next attempt in %.1fs", failure, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        if self._link is None:
            self._link = MqttLink(
                self.mqtt,
                self.client_id,
                mqtt5=self._mqtt5,
                will=(self.presence_topic, b"offline"),
                on_message=self._from_broker,
                on_published=self._published,
                on_lost=self._connection_lost,
            )
        else:
            self._link.reset()
        link = self._link
        try:
            session = await link.connect()
            identify = bool(self.routes.overlaps)  # identifiers only where copies can double
            for subscription in self.routes.subscriptions:
                answer = await link.subscribe(
                    subscription.filter.value,
                    subscription.qos,
                    subscription.identifier if identify else None,
                )
                self._check_subscription(subscription.filter.value, answer)
            for topic in self._listeners:
                self._check_subscription(topic, await link.subscribe(topic, 1, None))
        except BaseException:
            link.abort()
            raise
        self._went_online(session)

    def _check_subscription(self, topic_filter: str, answer: ReasonCode) -> None:
        if answer.is_failure:
            problem = f"the broker refused the subscription: {answer}"
            if self._subscription_problems.get(topic_filter) != problem:
                log.warning("bridge: %s to %r; nothing arrives through it", problem, topic_filter)
            self._subscription_problems[topic_filter] = problem
        else:
            self._subscription_problems.pop(topic_filter, None)

    def _went_online(self, session: Session) -> None:
        self._session = session
        self._window = max(1, min(MAX_WINDOW, session.receive_maximum))
        self._dedupe = session.subscription_identifiers and bool(self.routes.overlaps)
        if self.routes.overlaps and not self._dedupe:
            log.warning(
                "bridge: the broker subscriptions %s overlap and MQTT %s cannot tell "
                "the copies apart: a message matching both arrives twice",
                self.routes.overlaps,
                session.protocol,
            )
        self.state = CONNECTED
        self.last_error = None
        self.connections += 1
        self.connected_since = time.monotonic()
        self._online = True
        log.info(
            "bridge: connected to %s (MQTT %s%s, %s session%s)",
            self.where,
            session.protocol,
            ", TLS" if self.mqtt.tls_params else "",
            "clean" if self.mqtt.clean_session else "persistent",
            ", resumed" if session.session_present else "",
        )
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
        self._count_unwritten()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    async def _run_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        try:
            await hook()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "bridge: an on_connect callback (%s) failed", getattr(hook, "__qualname__", hook)
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
            counters = delivery.route.counters_out
            if self._passes(counters, delivery.problem, topic, payload):
                self._submit(
                    Outgoing(delivery.topic, payload, delivery.qos, delivery.retain, counters),
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
            self._send(item, echo)
            return
        item.echo = echo
        if priority:
            self._priority.append(item)
            return
        if item.counters is not None:
            item.counters.buffered += 1
        for dropped in self.outbox.append(item):
            self._lose(dropped, "buffer_full")

    def _flush(self) -> None:
        """Send queued messages in order while the broker's window has room."""
        priority, outbox = self._priority, self.outbox
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
        assert self._link is not None
        info = self._link.publish(item.topic, item.payload, item.qos, item.retain)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            # paho still holds an unacknowledged message under this id (after 65535 others):
            # put it back first; the next attempt gets the next id.
            item.echo = echo
            self._priority.appendleft(item)
            return
        if item.qos == 0 and info.rc != paho.MQTT_ERR_SUCCESS:
            self._lose(item, "not_connected")
            return
        if item.qos:
            self._inflight[info.mid] = (info, item)
        else:
            self._track_unwritten(info, item)
            if item.done is not None:
                item.done.set_result(None)
        if item.counters is not None:
            item.counters.messages += 1
            item.counters.bytes += len(item.payload)
        if echo and not self._mqtt5:
            self.mqtt_guard.add(item.topic, item.payload)

    def _track_unwritten(self, info: paho.MQTTMessageInfo, item: Outgoing) -> None:
        unwritten = self._unwritten
        while unwritten and unwritten[0][0].is_published():  # paho writes in order
            unwritten.popleft()
        if not info.is_published():
            unwritten.append((info, item))

    def _count_unwritten(self) -> None:
        """QoS 0 publications paho still held when the connection went: never written, lost."""
        for info, item in self._unwritten:
            if not info.is_published():
                if item.counters is not None:
                    item.counters.messages -= 1
                    item.counters.bytes -= len(item.payload)
                self._lose(item, "not_connected")
        self._unwritten.clear()

    def _published(self, mid: int, reason: ReasonCode) -> None:
        """paho's on_publish. Acknowledgements are handled after paho has marked the message
        published, which also tells a QoS>=1 acknowledgement from a written QoS 0 message
        that happens to reuse the id."""
        if mid not in self._inflight:
            return
        if not self._acked:
            assert self._loop is not None
            self._loop.call_soon(self._settle)
        self._acked.append((mid, reason))

    def _settle(self) -> None:
        acked, self._acked = self._acked, []
        for mid, reason in acked:
            entry = self._inflight.get(mid)
            if entry is None or not entry[0].is_published():
                continue
            del self._inflight[mid]
            item = entry[1]
            if reason.is_failure:
                self._lose(item, "broker_refused", f"{item.topic!r}: {reason}")
            elif item.done is not None and not item.done.done():
                item.done.set_result(None)
        self._flush()

    def _lose(self, item: Outgoing, reason: str, example: str | None = None) -> None:
        if item.counters is not None:
            self._drop(item.counters, reason, example or repr(item.topic))
        else:
            self._drops.note(reason, example or repr(item.topic))
        if item.done is not None and not item.done.done():
            item.done.set_exception(BridgeError(f"{DROP_REASONS[reason]}: {item.topic!r}"))

    # --- broker to bus ------------------------------------------------------------------------

    def _from_broker(self, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self._drop_unrouted("from_broker", "invalid_utf8", "a topic from the broker")
            return
        listener = self._listeners.get(topic)
        if listener is not None:  # the appliance's own command, not traffic for the bus
            listener(cast(bytes, message.payload))
            return
        resolution = self.routes.inbound(topic)
        if self._dedupe and resolution.subscription_id is not None:
            identifiers = getattr(message.properties, "SubscriptionIdentifier", None)
            if identifiers and resolution.subscription_id not in identifiers:
                self._duplicates += 1  # the same message, through a second subscription
                return
        payload = cast(bytes, message.payload)  # paho hands over bytes (typed bytes | bytearray)
        if not self._mqtt5 and self.mqtt_guard.consume(topic, payload):
            return
        for delivery in resolution.deliveries:
            if self._passes(delivery.route.counters_in, delivery.problem, topic, payload):
                if not self._to_bus:
                    assert self._loop is not None
                    self._loop.call_soon(self._send_to_bus)
                self._to_bus.append((delivery, payload))

    def _send_to_bus(self) -> None:
        """Put what the last read from the broker brought on the bus, back to back.

        The first frame wakes the bus's proxy thread (about 10 us when it sleeps); frames right
        behind it cost about 1 us. Sending after paho's read batch instead of one by one saves
        most wake-ups under load and delays nothing when messages come one at a time.
        """
        batch, self._to_bus = self._to_bus, []
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

    # --- counting -----------------------------------------------------------------------------

    def _passes(self, counters: Counters, problem: str | None, topic: str, payload: bytes) -> bool:
        """False (and counted) if the topic cannot exist on the other side or the payload is
        over bridge.max_payload."""
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

        If the bridge is connected already, the callback also runs now.
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
                self._check_subscription(topic, await link.subscribe(topic, 1, None))

            self._start_hook(subscribe_now)

        def remove() -> None:
            self._listeners.pop(topic, None)

        return remove

    def _start_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self._run_hook(hook), name="bridge-on-connect")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    async def publish_retained(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish a retained message and wait until the broker has it (QoS>=1) or it is written.

        Raises BridgeError when the broker is not connected (use ``on_connect`` to publish on
        every connection), for a topic MQTT cannot carry, or if the message is lost.
        """
        problem = mqtt_topic_problem(topic) if topic else "empty topic"
        if problem is not None:
            raise BridgeError(f"cannot publish to {topic!r}: {DROP_REASONS.get(problem, problem)}")
        if not self._online or self._loop is None:
            raise BridgeError(f"the bridge is not connected to a broker ({self.state})")
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
            return f"connected to {self.where} (MQTT {self._session.protocol})"
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

    def status(self) -> BridgeStatus:
        session = self._session
        return BridgeStatus(
            enabled=True,
            state=self.state,
            detail=self.detail,
            broker=self.where if self.mqtt.broker_address else None,
            client_id=self.client_id,
            protocol=session.protocol if session and self.state == CONNECTED else None,
            tls=self.mqtt.tls_params is not None,
            clean_session=self.mqtt.clean_session,
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
            window=self._window if self.state == CONNECTED else None,
            buffer=self.outbox.stats(),
            routes=self.routes.describe(),
            subscription_problems=dict(self._subscription_problems),
            unrouted_drops={side: dict(counts) for side, counts in self._unrouted.items()},
            overlap_duplicates_skipped=self._duplicates,
            loop_guard={"bus": self.bus_guard.stats(), "broker": self.mqtt_guard.stats()},
            bus_reader=self._reader.status() if self._reader is not None else None,
        )
