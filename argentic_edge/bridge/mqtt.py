"""MqttLink: the MQTT uplink, one paho-mqtt client driven by the asyncio loop (bridge/link.py).

Why not aiomqtt's own API: it turns every received message into a queue item plus a task plus an
``asyncio.wait``, and every publish into a future. Measured here, that caps the bridge at about
half of paho's rate (19 k against 41 k msg/s received). Driving paho through its documented
external-loop interface (``on_socket_*`` callbacks, ``loop_read``/``loop_write``/``loop_misc``,
the same interface aiomqtt uses) lets a received message go from paho's parser to the bus in one
function call, and lets publishes be queued without awaiting each one: QoS 0 goes straight to the
socket, QoS>=1 keeps as many in flight as the uplink service's window (the broker's receive
maximum) allows.

Each connection gets a fresh paho client with the same client id: the broker keeps a persistent
session by that id, and what was in flight when a connection dropped is the service's to send
again (the Link contract), so an old client's own resend queue must not send it a second time.
MQTT 5 subscriptions are no-local (our own publications do not come back), and where two
broker subscriptions overlap, subscription identifiers tell a message's two copies apart.
A broker that does not speak MQTT 5 makes connect() raise ConnectError(fallback=True): the
service then asks the factory for the MQTT 3.1.1 variant.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from argentic_edge.bridge.link import (
    ConnectError,
    LinkCallbacks,
    LinkError,
    LinkSession,
    Publication,
)
from argentic_edge.bridge.routes import overlapping_filters
from argentic_edge.bridge.tls import describe_failure, tls_context
from argentic_edge.config import MqttConfig
from argentic_edge.topics import TopicFilter, TopicTree

log = logging.getLogger(__name__)

BridgeError = LinkError  # the name this module's users (ha-remove, older code) know it by
NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 session expiry: keep the session like MQTT 3.1.1 does
UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason of a broker that does not speak MQTT 5
CONNECT_TIMEOUT = 10.0  # TCP, TLS and CONNACK together
READ_BATCH = 256  # packets read per wake-up before other tasks get a turn
MAX_WINDOW = 1000  # QoS>=1 publications in flight, when the broker allows that many
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: another client connected with our id
KEEP_CACHE = 4096  # topics whose kept subscription identifier is remembered


@dataclass(frozen=True)
class Session:
    """What the broker said in its CONNACK."""

    protocol: str
    session_present: bool
    receive_maximum: int  # how many QoS>=1 publications the broker takes in flight at once
    subscription_identifiers: bool


class MqttLink:
    """The ``Link`` of an MQTT uplink (see the module docstring); callbacks run in the loop."""

    def __init__(
        self,
        config: MqttConfig,
        callbacks: LinkCallbacks,
        *,
        client_id: str,
        mqtt5: bool = True,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.config = config
        self.callbacks = callbacks
        self.client_id = client_id
        self.mqtt5 = mqtt5
        self.will = will
        self._where = f"{config.broker_address}:{config.port}"
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tls = tls_context(config.tls_params) if config.tls_params is not None else None
        self._connack: asyncio.Future[Session] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._subscribes: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._fd = -1
        self.connected = False
        self._stopping = False
        self.session: Session | None = None
        # QoS>=1 publications waiting for their acknowledgement, by packet id.
        self._pending: dict[int, tuple[paho.MQTTMessageInfo, Publication]] = {}
        # QoS 0 publications handed to paho and not yet written to its socket, oldest first:
        # settled once written, or as ``not_connected`` when the connection goes first.
        self._unwritten: deque[tuple[paho.MQTTMessageInfo, Publication]] = deque()
        self._acked: list[tuple[int, ReasonCode]] = []
        self._blocked: deque[Publication] = deque()  # paho had no packet id free (65535 out)
        self._identifiers: TopicTree[int] | None = None  # set where subscriptions overlap
        self._keep: dict[str, int] = {}  # topic -> the identifier whose copy we keep (cache)
        self.duplicates = 0
        self.client = self._new_client()

    def _new_client(self) -> paho.Client:
        config = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if self.mqtt5 else paho.MQTTv311,
            clean_session=None if self.mqtt5 else config.clean_session,
            reconnect_on_failure=False,
        )
        # Unlimited in paho: the service keeps its own window (paho rescans every queued
        # message on each acknowledgement when it limits, which is quadratic under load).
        client.max_inflight_messages_set(0)
        client.connect_timeout = CONNECT_TIMEOUT
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        if config.username is not None:
            password = config.password.reveal() if config.password is not None else None
            client.username_pw_set(config.username, password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        return client

    @property
    def where(self) -> str:
        return self._where

    @property
    def protocol(self) -> str:
        return "5" if self.mqtt5 else "3.1.1"

    # --- connecting -------------------------------------------------------------------------

    async def connect(self) -> LinkSession:
        """Open the connection and wait for the broker's CONNACK; ConnectError if refused."""
        if self.session is not None:  # a reconnection: a fresh client (module docstring)
            self._detach(self.client)
            self.client = self._new_client()
        self._stopping = False
        self._pending.clear()
        self._blocked.clear()
        self._connack = self._loop.create_future()
        self._closed = self._loop.create_future()
        self._connecting = self._loop.run_in_executor(None, self._blocking_connect)
        try:
            await asyncio.shield(self._connecting)  # on cancel, the thread's socket is closed
        except (OSError, ValueError) as exc:
            raise ConnectError(describe_failure(exc, self.where, self._tls is not None)) from None
        try:
            session = await asyncio.wait_for(self._connack, CONNECT_TIMEOUT)
        except TimeoutError:
            self.abort()
            raise ConnectError(
                f"{self.where} accepted TCP but sent no CONNACK within "
                f"{CONNECT_TIMEOUT:g}s (is it an MQTT broker?)"
            ) from None
        self.connected = True
        self.session = session
        self._misc = self._loop.create_task(self._housekeeping(), name="mqtt-keepalive")
        return LinkSession(
            description=f"MQTT {session.protocol}",
            window=max(1, min(MAX_WINDOW, session.receive_maximum)),
            resumed=session.session_present,
            echoes=not self.mqtt5,
        )

    def _blocking_connect(self) -> None:
        """paho's connect: DNS, TCP and the TLS handshake block, so this runs in a thread."""
        config = self.config
        assert config.broker_address is not None
        properties = None
        clean_start: Any = paho.MQTT_CLEAN_START_FIRST_ONLY
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0 if config.clean_session else NEVER_EXPIRES
            clean_start = config.clean_session
        self.client.connect(
            config.broker_address,
            config.port,
            config.keepalive,
            clean_start=clean_start,
            properties=properties,
        )

    def _handle_connect(
        self,
        _client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._connack
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(
                ConnectError(
                    f"{self.where} refused the connection: {reason}{_refusal_hint(reason)}",
                    fallback=self.mqtt5 and reason.value == UNSUPPORTED_PROTOCOL,
                )
            )
            return
        future.set_result(
            Session(
                protocol=self.protocol,
                session_present=bool(flags.session_present),
                receive_maximum=int(getattr(properties, "ReceiveMaximum", 65535)),
                subscription_identifiers=self.mqtt5
                and bool(getattr(properties, "SubscriptionIdentifierAvailable", 1)),
            )
        )

    def _disconnect_text(self, flags: paho.DisconnectFlags, reason: ReasonCode) -> str:
        if flags.is_disconnect_packet_from_server and reason.value == SESSION_TAKEN_OVER:
            return (
                f"session taken over: another client connected with our client id "
                f"{self.client_id!r} and the broker closed our connection (MQTT 5 reason "
                "0x8E); give every client its own client id"
            )
        if flags.is_disconnect_packet_from_server:
            return f"the broker disconnected us ({reason})"
        if str(reason) == "Unspecified error":
            return (
                "the connection was closed (a broker closes it without saying why when another "
                f"client connects with our client id {self.client_id!r}, as Mosquitto 2.0 does)"
            )
        return str(reason)

    def _handle_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self.connected
        self.connected = False
        text = self._disconnect_text(flags, reason)
        if self._connack is not None and not self._connack.done():
            hint = (
                "does it want a client certificate (tls_params.certfile and keyfile)"
                if self._tls is not None
                else "does the broker expect TLS"
            )
            self._connack.set_exception(
                ConnectError(
                    f"{self.where} closed the connection before accepting it ({text}; "
                    f"{hint}, or refuse this client id?)"
                )
            )
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        for future in self._subscribes.values():
            if not future.done():
                future.set_exception(ConnectError(f"connection lost while subscribing: {text}"))
        self._subscribes.clear()
        self._settle_unwritten()
        if was_connected and not self._stopping:
            self.callbacks.on_lost(f"lost the connection to {self.where}: {text}")

    # --- subscribing ----------------------------------------------------------------------------

    async def subscribe(
        self, filters: Sequence[tuple[str, int]], timeout: float = CONNECT_TIMEOUT
    ) -> dict[str, str]:
        """Subscribe every filter at once and wait for the SUBACKs.

        On MQTT 5 the subscriptions are no-local and receive retained messages only when new
        (not again on every reconnect of a session). Where filters overlap, an identifier per
        subscription marks the copies it delivers and only one copy goes on; identifiers are
        given only then: paho parses message properties slowly, and an identifier on every
        message costs a third of the receive rate.
        """
        overlaps = overlapping_filters([TopicFilter(value) for value, _ in filters])
        identify = (
            bool(overlaps) and self.session is not None and self.session.subscription_identifiers
        )
        if overlaps and not identify:
            log.warning(
                "uplink: the broker subscriptions %s overlap and MQTT %s cannot tell "
                "the copies apart: a message matching both arrives twice",
                overlaps,
                self.protocol,
            )
        self._identifiers = (
            TopicTree((TopicFilter(value), number) for number, (value, _) in enumerate(filters, 1))
            if identify
            else None
        )
        self._keep.clear()
        waiting = [
            (value, self._send_subscribe(value, qos, number if identify else None))
            for number, (value, qos) in enumerate(filters, 1)
        ]
        problems = {}
        for value, (mid, future) in waiting:
            try:
                codes = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise ConnectError(
                    f"{self.where} did not confirm the subscription to "
                    f"{value!r} within {timeout:g}s"
                ) from None
            finally:
                self._subscribes.pop(mid, None)
            if codes[0].is_failure:
                problems[value] = f"the broker refused the subscription: {codes[0]}"
        return problems

    def _send_subscribe(
        self, topic_filter: str, qos: int, identifier: int | None
    ) -> tuple[int, asyncio.Future[list[ReasonCode]]]:
        if self.mqtt5:
            options = SubscribeOptions(
                qos=qos, noLocal=True, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            properties = None
            if identifier is not None:
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = identifier
            result, mid = self.client.subscribe([(topic_filter, options)], properties=properties)
        else:
            result, mid = self.client.subscribe(topic_filter, qos)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectError(f"cannot subscribe to {topic_filter!r}: {paho.error_string(result)}")
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subscribes[mid] = future
        return mid, future

    def _handle_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        future = self._subscribes.get(mid)
        if future is not None and not future.done():
            future.set_result(codes)

    # --- receiving --------------------------------------------------------------------------------

    def _handle_message(
        self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage
    ) -> None:
        """paho's on_message: to the service in one call. A topic that is not UTF-8 goes on
        with its bad bytes as surrogates, for the service to count (link.py)."""
        raw = message._topic  # paho's .topic decodes strictly, raising
        topic = raw.decode("utf-8", "surrogateescape")
        if self._identifiers is not None and not self._first_copy(topic, message):
            self.duplicates += 1  # the same message, through a second subscription
            return
        payload = cast(bytes, message.payload)  # paho hands over bytes (typed bytes | bytearray)
        self.callbacks.on_message(topic, payload, None)

    def _first_copy(self, topic: str, message: paho.MQTTMessage) -> bool:
        """True for the copy delivered by the lowest-numbered subscription matching the topic."""
        assert self._identifiers is not None
        keep = self._keep.get(topic)
        if keep is None:
            matched = self._identifiers.match(topic)
            if not matched:
                return True
            if len(self._keep) >= KEEP_CACHE:
                self._keep.clear()
            keep = self._keep[topic] = min(matched)
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None)
        return not identifiers or keep in identifiers

    # --- publishing ---------------------------------------------------------------------------

    def publish(self, publication: Publication) -> None:
        """Queue a publication (never blocks); the loop writes it when the socket is ready."""
        info = self.client.publish(
            publication.topic, publication.payload, publication.qos, publication.retain
        )
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            # paho still holds an unacknowledged message under this id (after 65535 others):
            # it goes again after the next acknowledgement.
            self._blocked.append(publication)
            return
        if publication.qos:
            self._pending[info.mid] = (info, publication)
        elif info.rc != paho.MQTT_ERR_SUCCESS:
            self.callbacks.on_settled(publication.token, "not_connected")
        else:
            self._unwritten.append((info, publication))

    def _handle_publish(
        self, _client: paho.Client, _data: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        """paho's on_publish. Acknowledgements are handled after paho has marked the message
        published, which also tells a QoS>=1 acknowledgement from a written QoS 0 message
        that happens to reuse the id."""
        if mid not in self._pending:
            return
        if not self._acked:
            self._loop.call_soon(self._settle)
        self._acked.append((mid, reason))

    def _settle(self) -> None:
        acked, self._acked = self._acked, []
        settled = self.callbacks.on_settled
        for mid, reason in acked:
            entry = self._pending.get(mid)
            if entry is None or not entry[0].is_published():
                continue
            del self._pending[mid]
            publication = entry[1]
            settled(
                publication.token,
                f"broker_refused: {publication.topic!r}: {reason}" if reason.is_failure else None,
            )
        blocked = self._blocked
        for _ in range(len(blocked)):
            self.publish(blocked.popleft())

    def _settle_written(self) -> None:
        """QoS 0 publications paho has written since the last look (it writes in order)."""
        unwritten = self._unwritten
        settled = self.callbacks.on_settled
        while unwritten and unwritten[0][0].is_published():
            settled(unwritten.popleft()[1].token, None)

    def _settle_unwritten(self) -> None:
        """The connection went: QoS 0 publications paho still held were never written."""
        unwritten, self._unwritten = self._unwritten, deque()
        for info, publication in unwritten:
            try:
                written = info.is_published()
            except RuntimeError:  # paho marks them failed when it drops its queue
                written = False
            self.callbacks.on_settled(publication.token, None if written else "not_connected")

    # --- closing ------------------------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """A clean DISCONNECT (the broker then does not publish our will), then detach."""
        self._stopping = True
        if self.connected and self._closed is not None:
            self.client.disconnect()
            try:
                await asyncio.wait_for(self._closed, timeout)
            except TimeoutError:
                log.warning("uplink: %s did not close the connection in %gs", self.where, timeout)
        self.abort()
        self._detach(self.client)

    def abort(self) -> None:
        """Close the socket now, without a DISCONNECT (as if the network had failed).

        A connect still running in its thread (the caller was cancelled) is closed when it ends.
        """
        self._stopping = True
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if self._connecting is not None and not self._connecting.done():
            client = self.client
            self._connecting.add_done_callback(lambda _: self._close_socket(client))
        self._close_socket(self.client)

    def _close_socket(self, client: paho.Client) -> None:
        sock = client.socket()
        if sock is not None:
            self._unwatch(sock.fileno())
            sock.close()
        if client is self.client:
            self.connected = False

    def _detach(self, client: paho.Client) -> None:
        """Let go of an old client for good (paho's finaliser closes sockets later)."""
        self._close_socket(client)
        client.on_socket_open = client.on_socket_close = None
        client.on_socket_register_write = client.on_socket_unregister_write = None
        client.on_connect = client.on_disconnect = client.on_message = None
        client.on_publish = client.on_subscribe = None

    def status(self) -> dict[str, Any]:
        return {
            "version": self.protocol if self.connected else None,
            "client_id": self.client_id,
            "tls": self._tls is not None,
            "clean_session": self.config.clean_session,
            "overlap_duplicates_skipped": self.duplicates,
        }

    # --- the asyncio side of paho's external loop ----------------------------------------------

    async def _housekeeping(self) -> None:
        """Keepalive pings and timeouts: paho's loop_misc, once a second."""
        while self.client.loop_misc() == paho.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)

    def _in_loop(self, function: Callable[..., None], *args: Any) -> None:
        """paho calls the socket callbacks from the connect thread too; run them in the loop."""
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def _socket_open(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock)

    def _is_current(self, sock: object) -> bool:
        """A callback may name a socket paho has already replaced by a reconnect."""
        return sock is self.client.socket()

    def _watch(self, sock: Any) -> None:
        if self._is_current(sock) and sock.fileno() >= 0:
            self._fd = sock.fileno()
            # Small MQTT packets must not wait for Nagle's algorithm (up to 40 ms at p99).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._loop.add_reader(self._fd, self._readable)

    def _socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._unwatch, sock.fileno())

    def _unwatch(self, fd: int) -> None:
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        if fd == self._fd:
            self._fd = -1

    def _register_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch_write, sock)

    def _watch_write(self, sock: Any) -> None:
        if self._is_current(sock) and sock.fileno() >= 0:
            self._loop.add_writer(sock.fileno(), self._writable)

    def _unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._in_loop(self._unwatch_write, sock.fileno())

    def _unwatch_write(self, fd: int) -> None:
        if fd >= 0:
            self._loop.remove_writer(fd)

    def _readable(self) -> None:
        """Read every packet that is there now (up to READ_BATCH), not just one.

        paho's loop_read parses one packet per call (for QoS 0/1 traffic); going back through
        the event loop for each costs more than the packet. A zero-timeout select tells whether
        more bytes wait; TLS may also hold decrypted bytes the socket no longer signals.
        """
        client = self.client
        try:
            for _ in range(READ_BATCH):
                if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    return
                sock = client.socket()
                if sock is None:
                    return
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    continue
                if not select.select((sock,), (), (), 0)[0]:
                    return
        except Exception:  # a callback of ours failed: report it, keep the loop alive
            log.exception(
                "uplink: error while reading from %s; dropping the connection", self.where
            )
            self._fail_connection("internal error while reading")

    def _writable(self) -> None:
        try:
            self.client.loop_write()
            self._settle_written()
        except Exception:
            log.exception("uplink: error while writing to %s; dropping the connection", self.where)
            self._fail_connection("internal error while writing")

    def _fail_connection(self, text: str) -> None:
        was_connected = self.connected
        self.abort()
        self._stopping = False
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._settle_unwritten()
        if was_connected:
            self.callbacks.on_lost(f"lost the connection to {self.where}: {text}")


def _refusal_hint(reason: ReasonCode) -> str:
    name = str(reason).lower()
    if "user name or password" in name:
        return " (check bridge.mqtt.username and password)"
    if "not authorized" in name:
        return (
            " (check bridge.mqtt.username and password; the broker's access rules may also "
            "refuse this client id)"
        )
    if "identifier" in name:
        return " (check bridge.mqtt.client_id)"
    return ""
