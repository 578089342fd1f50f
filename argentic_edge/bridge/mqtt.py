"""MqttLink: one paho-mqtt client driven by the asyncio loop, its callbacks wired to the bridge.

Why not aiomqtt's own API: it turns every received message into a queue item plus a task plus an
``asyncio.wait``, and every publish into a future. Measured here, that caps the bridge at about
half of paho's rate (19 k against 41 k msg/s received). Driving paho through its documented
external-loop interface (``on_socket_*`` callbacks, ``loop_read``/``loop_write``/``loop_misc``,
the same interface aiomqtt uses) lets a received message go from paho's parser to the bus in one
function call, and lets publishes be queued without awaiting each one.

One paho client lives as long as the bridge: reconnecting the same client keeps its session
state, so QoS>=1 messages in flight when the connection dropped are sent again (MQTT requires
it for persistent sessions). A new client is made only to fall back from MQTT 5 to 3.1.1.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from argentic_edge.config import MqttConfig, TlsParams
from argentic_edge.errors import EdgeError

log = logging.getLogger(__name__)

PROTOCOL_NAMES = {paho.MQTTv5: "5", paho.MQTTv311: "3.1.1"}
NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 session expiry: keep the session like MQTT 3.1.1 does
UNSUPPORTED_PROTOCOL = 0x84  # CONNACK reason of a broker that does not speak MQTT 5
CONNECT_TIMEOUT = 10.0  # TCP, TLS and CONNACK together
READ_BATCH = 256  # packets read per wake-up before other tasks get a turn
_TLS_VERSIONS = {
    "PROTOCOL_TLS": None,
    "PROTOCOL_TLS_CLIENT": None,
    "PROTOCOL_TLSv1": ssl.TLSVersion.TLSv1,
    "PROTOCOL_TLSv1_1": ssl.TLSVersion.TLSv1_1,
    "PROTOCOL_TLSv1_2": ssl.TLSVersion.TLSv1_2,
    "PROTOCOL_TLSv1_3": ssl.TLSVersion.TLSv1_3,
}


class BridgeError(EdgeError):
    """Something the bridge cannot do as configured, said so a user can act on it."""


class ConnectError(BridgeError):
    """A connection attempt failed; ``protocol_refused`` means "try MQTT 3.1.1"."""

    def __init__(self, message: str, *, protocol_refused: bool = False) -> None:
        super().__init__(message)
        self.protocol_refused = protocol_refused


def tls_context(params: TlsParams) -> ssl.SSLContext:
    """An SSLContext from the seed's ``tls_params``; file problems name the key and the file.

    ``tls_version`` pins the protocol version the way the old ``ssl.PROTOCOL_TLSv1_2`` constants
    did (minimum = maximum); ``PROTOCOL_TLS`` and ``PROTOCOL_TLS_CLIENT`` negotiate the best one.
    In client mode ``CERT_OPTIONAL`` verifies like ``CERT_REQUIRED`` (Python's ssl documents so).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    version = _TLS_VERSIONS[params.tls_version]
    if version is not None:
        if version < ssl.TLSVersion.TLSv1_2:
            log.warning(
                "bridge: tls_version %s is obsolete and most OpenSSL builds refuse it",
                params.tls_version,
            )
        with warnings.catch_warnings():  # the deprecation is said above, in the user's terms
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
    if params.cert_reqs == "CERT_NONE":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = getattr(ssl, params.cert_reqs)
        try:
            if params.ca_certs:
                context.load_verify_locations(params.ca_certs)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise _file_error("ca_certs", params.ca_certs, exc) from None
    if params.certfile and params.keyfile:
        try:
            context.load_cert_chain(params.certfile, params.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise _file_error(
                "certfile/keyfile", f"{params.certfile}, {params.keyfile}", exc
            ) from None
    if params.ciphers:
        context.set_ciphers(params.ciphers)
    return context


def _file_error(key: str, path: str | None, exc: OSError) -> BridgeError:
    reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
    return BridgeError(f"bridge.mqtt.tls_params.{key}: cannot load {path!r}: {reason}")


def describe_failure(exc: BaseException, where: str, tls: bool = False) -> str:
    """A sentence for a failed TCP/TLS connection, with the likely fix."""
    if tls and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)):
        return (
            f"{where} closed the connection during the TLS handshake "
            "(is this port a TLS listener? does it want a client certificate?)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of {where} is not trusted ({exc.verify_message}); "
            "check bridge.mqtt.tls_params.ca_certs and the broker's host name"
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (is this port a TLS listener?)" if "WRONG_VERSION_NUMBER" in str(reason) else ""
        return f"TLS handshake with {where} failed: {reason}{hint}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (is the broker running and listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name in {where}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"{where} did not answer in time"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"cannot connect to {where}: {exc}"


@dataclass(frozen=True)
class Session:
    """What the broker said when it accepted us."""

    protocol: str
    session_present: bool
    receive_maximum: int  # how many QoS>=1 publications the broker takes in flight at once
    subscription_identifiers: bool


class MqttLink:
    """A paho client on the running loop. Callbacks run in the loop thread:

    - ``on_message(message)`` for every PUBLISH received,
    - ``on_published(mid, reason)`` when a QoS>=1 publication is acknowledged (and when a QoS 0
      one has been written: the bridge tells them apart by mid),
    - ``on_lost(reason)`` when an established connection ends without ``disconnect()``.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        *,
        mqtt5: bool,
        will: tuple[str, bytes] | None,
        on_message: Callable[[paho.MQTTMessage], None],
        on_published: Callable[[int, ReasonCode], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.config = config
        self.where = f"{config.broker_address}:{config.port}"
        self.mqtt5 = mqtt5
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._connack: asyncio.Future[Session] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._subscribes: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._fd = -1
        self.connected = False
        self._stopping = False
        self._tls = tls_context(config.tls_params) if config.tls_params is not None else None

        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
            clean_session=None if mqtt5 else config.clean_session,
            reconnect_on_failure=False,
        )
        # Unlimited in paho: the bridge keeps its own window (paho rescans every queued message
        # on each acknowledgement when it limits, which is quadratic under load).
        client.max_inflight_messages_set(0)
        client.connect_timeout = CONNECT_TIMEOUT
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = lambda _client, _userdata, message: on_message(message)
        client.on_publish = lambda _client, _data, mid, reason, _props: on_published(mid, reason)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        if config.username is not None:
            password = config.password.reveal() if config.password is not None else None
            client.username_pw_set(config.username, password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        self.client = client

    @property
    def protocol(self) -> str:
        return "5" if self.mqtt5 else "3.1.1"

    # --- connecting -------------------------------------------------------------------------

    async def connect(self) -> Session:
        """Open the connection and wait for the broker's CONNACK; ConnectError if refused."""
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
        self._misc = self._loop.create_task(self._housekeeping(), name="mqtt-keepalive")
        return session

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
                    protocol_refused=self.mqtt5 and reason.value == UNSUPPORTED_PROTOCOL,
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
        if flags.is_disconnect_packet_from_server:
            text = f"the broker disconnected us ({reason})"
        elif str(reason) == "Unspecified error":
            text = "the connection was closed"
        else:
            text = str(reason)
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
        if was_connected and not self._stopping:
            self._on_lost(f"lost the connection to {self.where}: {text}")

    # --- subscribing and publishing -----------------------------------------------------------

    async def subscribe(
        self, topic_filter: str, qos: int, identifier: int | None, timeout: float = CONNECT_TIMEOUT
    ) -> ReasonCode:
        """Subscribe one filter and wait for the SUBACK; returns the broker's answer for it.

        On MQTT 5 the subscription is no-local (our own publications do not come back) and
        receives retained messages only when it is new (not again on every reconnect of a
        session). An ``identifier`` (MQTT 5) marks the copies it delivers, which tells the two
        copies of a message apart where subscriptions overlap; give one only then: paho parses
        message properties slowly, and an identifier on every message costs a third of the
        receive rate.
        """
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
        try:
            codes = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ConnectError(
                f"{self.where} did not confirm the subscription to "
                f"{topic_filter!r} within {timeout:g}s"
            ) from None
        finally:
            self._subscribes.pop(mid, None)
        return codes[0]

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

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> paho.MQTTMessageInfo:
        """Queue a publication (never blocks); the loop writes it when the socket is ready."""
        return self.client.publish(topic, payload, qos, retain)

    # --- closing ------------------------------------------------------------------------------

    async def disconnect(self, timeout: float = 2.0) -> None:
        """A clean DISCONNECT (the broker then does not publish our will)."""
        self._stopping = True
        if self.connected and self._closed is not None:
            self.client.disconnect()
            try:
                await asyncio.wait_for(self._closed, timeout)
            except TimeoutError:
                log.warning("bridge: %s did not close the connection in %gs", self.where, timeout)
        self.abort()

    def abort(self) -> None:
        """Close the socket now, without a DISCONNECT (as if the network had failed).

        A connect still running in its thread (the caller was cancelled) is closed when it ends.
        """
        self._stopping = True
        if self._misc is not None:
            self._misc.cancel()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.add_done_callback(lambda _: self._close_socket())
        self._close_socket()

    def _close_socket(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            self._unwatch(sock.fileno())
            sock.close()
        self.connected = False

    def close(self) -> None:
        """Abort and detach from the loop for good (paho's finaliser closes sockets later)."""
        self.abort()
        client = self.client
        client.on_socket_open = client.on_socket_close = None
        client.on_socket_register_write = client.on_socket_unregister_write = None
        client.on_connect = client.on_disconnect = client.on_message = None
        client.on_publish = client.on_subscribe = None

    def reset(self) -> None:
        """Make the link usable for another connect() after a lost connection."""
        self._stopping = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

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
                "bridge: error while reading from %s; dropping the connection", self.where
            )
            self._fail_connection("internal error while reading")

    def _writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception:
            log.exception("bridge: error while writing to %s; dropping the connection", self.where)
            self._fail_connection("internal error while writing")

    def _fail_connection(self, text: str) -> None:
        was_connected = self.connected
        self.abort()
        self._stopping = False
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if was_connected:
            self._on_lost(f"lost the connection to {self.where}: {text}")


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
