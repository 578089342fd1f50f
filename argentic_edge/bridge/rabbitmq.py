"""RabbitLink: an uplink to RabbitMQ over AMQP 0-9-1 with aio-pika, in one of two conventions.

``exchange_mode: argentic`` (the default) is Argentic's own wire, as its RabbitMQ driver (0.16.6)
writes it: one **fanout** exchange per topic, named exactly as the topic, declared with aio-pika's
defaults (not durable, not auto-delete, not internal, no arguments: the same declaration, so
neither side's declare fails on the other's), routing key ``""``, the JSON as the body, transient
messages. This link declares each exchange once per connection (Argentic's driver re-declares it
before every publish). Receiving, the appliance binds one queue of its own to the exchange of each
topic its routes name. AMQP cannot list exchanges (only the management plugin can), so a wildcard
route binds to the exchanges whose names the appliance learns: the topics the bus side published
through this uplink, and the exact topics of other routes. An exchange only RabbitMQ-side
publishers use stays invisible to a wildcard route: name its topic in a route.

``exchange_mode: amq.topic`` is the convention of RabbitMQ's MQTT plugin: the ``amq.topic``
exchange, routing key = the topic with ``/`` and ``.`` swapped, filters with ``+`` → ``*`` and
``#`` → ``#``; MQTT clients of the same RabbitMQ and this uplink then see the same messages.
Its queue is durable and QoS>=1 messages persistent, so they survive a broker restart.

QoS>=1 publications go on a channel with publisher confirms and are settled when RabbitMQ
confirms them (many in flight at once); QoS 0 ones on a channel without, settled once written.
Received messages are acknowledged only when the service says they are on the bus.

Reconnecting is the service's job, as for every uplink (its back-off, its requeue of what was
not confirmed): each ``connect`` opens a new aio-pika connection and declares the queue, the
exchanges and the bindings again. Not aio-pika's robust connection: its own restore re-declares
what it remembers, and after a broker restart the transient exchanges it would bind to are gone
(its channel restore then hung in tests), and its reconnection task outlives cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.commands import Basic

from argentic_edge.bridge.batching import WINDOW, BatchingLink
from argentic_edge.bridge.link import ConnectError, LinkCallbacks, LinkSession, Publication
from argentic_edge.bridge.tls import describe_failure, tls_context
from argentic_edge.config import RabbitConfig
from argentic_edge.topics import TopicFilter, parse_filter

log = logging.getLogger(__name__)
TLS_SETTINGS = "the RabbitMQ uplink's tls_params"  # where a TLS fix goes, in failure messages

CONNECT_TIMEOUT = 10.0
QUEUE_EXPIRES_MS = 3_600_000  # our queue outlives a reconnect, not an appliance gone for good
MAX_NAME = 255  # bytes: AMQP short strings (exchange names, routing keys)
MAX_LEARNED = 10_000  # exchange names remembered for wildcard routes
TRANSIENT = Basic.Properties(delivery_mode=1)
PERSISTENT = Basic.Properties(delivery_mode=2)


def swap_separators(name: str) -> str:
    """RabbitMQ's MQTT plugin: MQTT ``/`` is AMQP ``.`` and the other way round."""
    return name.translate(str.maketrans("/.", "./"))


def binding_key(topic_filter: TopicFilter) -> str:
    """An MQTT filter as an amq.topic binding key (``+`` → ``*``, ``#`` stays)."""
    return ".".join(
        level if level in ("+", "#") else swap_separators(level) for level in topic_filter.levels
    ).replace("+", "*")


def name_problem(topic: str) -> str | None:
    """Why a topic cannot be an AMQP exchange name or routing key, or None."""
    if len(topic.encode("utf-8")) > MAX_NAME:
        return "topic_too_long"
    if topic.startswith("amq."):
        return "names starting with amq. are reserved by RabbitMQ"
    return None


class RabbitLink(BatchingLink):
    """One RabbitMQ broker; see the module docstring for the two conventions."""

    def __init__(self, config: RabbitConfig, callbacks: LinkCallbacks, *, client_id: str) -> None:
        tls = config.tls_params is not None
        vhost = (
            config.virtualhost if config.virtualhost.startswith("/") else f"/{config.virtualhost}"
        )
        super().__init__(
            callbacks,
            f"{'amqps' if tls else 'amqp'}://{config.broker_address}:{config.port}{vhost}",
        )
        self.config = config
        self.argentic = config.exchange_mode == "argentic"
        self.queue = f"argentic-edge.{client_id}.{'fanout' if self.argentic else 'amq.topic'}"
        self._client_id = client_id
        self._connection: AbstractConnection | None = None
        self._channels: list[AbstractChannel] = []
        self._confirming: aiormq.Channel | None = None
        self._fast: aiormq.Channel | None = None
        self._consuming: aiormq.Channel | None = None
        self._filters: list[TopicFilter] = []
        self._declared: set[str] = set()  # exchanges declared on this connection
        self._bound: set[str] = set()  # exchanges or binding keys our queue is bound to
        self._learned: set[str] = set()  # exchange names seen from the bus side
        self._closing = False
        self.confirmed = 0

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> LinkSession:
        if self.config.broker_address is None:
            raise ConnectError("no RabbitMQ broker configured (broker_address)")
        if self._connection is not None:  # a lost one: it is of no use any more
            self._spawn(self._connection.close())
        self._closing = False
        self._connection = await self._open()
        try:
            await self._start_session()
        except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
            self._cancel_tasks()
            raise ConnectError(f"{self.where}: setting up the channels failed: {exc}") from None
        server = (
            self._connection.transport.connection.server_properties
            if self._connection.transport
            else {}
        )
        version = server.get("version", "?") if isinstance(server, dict) else "?"
        return LinkSession(f"RabbitMQ {version!s} ({self.config.exchange_mode})", WINDOW)

    async def _open(self) -> AbstractConnection:
        tls = self.config.tls_params
        try:
            connection = await aio_pika.connect(
                host=self.config.broker_address or "",
                port=self.config.port,
                login=self.config.username,
                password=self.config.password.reveal(),
                virtualhost=self.config.virtualhost,
                ssl=tls is not None,
                ssl_context=tls_context(tls) if tls else None,
                timeout=CONNECT_TIMEOUT,
                client_properties={"connection_name": self._client_id},
            )
        except aiormq.exceptions.ProbableAuthenticationError:
            raise ConnectError(
                f"{self.where} refused the credentials (check username and password)"
            ) from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            raise ConnectError(self._failure(exc)) from None
        connection.close_callbacks.add(self._on_close)
        self._channels = [
            await connection.channel(publisher_confirms=True),
            await connection.channel(publisher_confirms=False),
            await connection.channel(publisher_confirms=False),
        ]
        return connection

    def _failure(self, exc: BaseException) -> str:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # aiormq wraps the TLS error in its own
            return describe_failure(cause, self.where, tls=True, settings=TLS_SETTINGS)
        if isinstance(exc, aiormq.exceptions.AMQPConnectionError) and "vhost" in str(exc):
            return f"{self.where}: the virtual host is not there or not allowed for this user"
        if isinstance(exc, OSError | TimeoutError):
            return describe_failure(
                exc, self.where, self.config.tls_params is not None, TLS_SETTINGS
            )
        return f"cannot connect to {self.where}: {exc}"

    def _on_close(self, _sender: object, exc: BaseException | None) -> None:
        if not self._closing:
            self._lost(self._session, f"connection closed: {exc or 'by the broker'}")

    async def _start_session(self) -> None:
        confirming, fast, consuming = [
            cast(aiormq.Channel, await channel.get_underlay_channel()) for channel in self._channels
        ]
        self._confirming, self._fast, self._consuming = confirming, fast, consuming
        self._declared.clear()
        self._bound.clear()
        session = self._begin()
        for channel in (confirming, fast, consuming):
            channel.closing.add_done_callback(partial(self._channel_closed, session))
        await consuming.basic_qos(prefetch_count=WINDOW)
        await consuming.queue_declare(
            self.queue,
            durable=not self.argentic,
            arguments={"x-expires": QUEUE_EXPIRES_MS},
        )
        await self._bind_all()
        await consuming.basic_consume(self.queue, partial(self._received, session))

    def _channel_closed(self, session: int, _closing: object) -> None:
        self._lost(session, "a channel was closed by the broker")

    async def close(self) -> None:
        self._closing = True
        await self._stop_tasks()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def abort(self) -> None:
        self._closing = True
        self._cancel_tasks()
        connection, self._connection = self._connection, None
        if connection is not None:  # the pending tasks are cancelled: nothing waits on it
            self._spawn(connection.close())

    def status(self) -> dict[str, Any]:
        return {
            "exchange_mode": self.config.exchange_mode,
            "queue": self.queue,
            "bound": len(self._bound),
            "learned_exchanges": len(self._learned),
            "confirmed": self.confirmed,
            **self.batching_status(),
        }

    # --- bus to RabbitMQ ----------------------------------------------------------------------

    async def _flush(self, batch: list[Publication], acks: list[int]) -> None:
        assert self._confirming is not None and self._fast is not None
        assert self._consuming is not None
        for tag in acks:
            await self._consuming.basic_ack(tag, wait=False)
        for publication in batch:
            problem = name_problem(publication.topic)
            if problem:
                self._settle(publication.token, problem)
                continue
            if self.argentic:
                await self._learn(publication.topic)
                exchange, key, properties = publication.topic, "", TRANSIENT
            else:
                exchange, key = "amq.topic", swap_separators(publication.topic)
                properties = PERSISTENT if publication.qos else TRANSIENT
            if publication.qos == 0:
                await self._fast.basic_publish(
                    publication.payload,
                    exchange=exchange,
                    routing_key=key,
                    properties=properties,
                    wait=False,
                )
                self._settle(publication.token)
            else:
                self._confirm(publication, exchange, key, properties)

    def _confirm(
        self, publication: Publication, exchange: str, key: str, properties: Basic.Properties
    ) -> None:
        """Publish on the confirming channel; settle when RabbitMQ confirms (or refuses)."""
        assert self._confirming is not None
        session = self._session
        task = asyncio.get_running_loop().create_task(
            self._confirming.basic_publish(
                publication.payload,
                exchange=exchange,
                routing_key=key,
                properties=properties,
                wait=False,
            )
        )

        def settled(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or session != self._session:
                return  # the session ended: the service requeues it
            exc = done.exception()
            if exc is not None:
                self._lost(session, f"publish failed: {exc}")
            elif isinstance(done.result(), Basic.Nack):
                self._settle(publication.token, "broker_refused")
            else:
                self.confirmed += 1
                self._settle(publication.token)

        task.add_done_callback(settled)

    async def _learn(self, topic: str) -> None:
        """Declare the topic's exchange once per connection (as Argentic's driver declares it)
        and bind our queue to it when a wildcard route wants it."""
        if topic in self._declared:
            return
        await self._declare(topic)
        if len(self._learned) < MAX_LEARNED:
            self._learned.add(topic)
        if any(topic_filter.matches(topic) for topic_filter in self._filters):
            await self._bind(topic)

    async def _declare(self, exchange: str) -> None:
        assert self._confirming is not None
        await self._confirming.exchange_declare(
            exchange, exchange_type="fanout", durable=False, auto_delete=False
        )
        self._declared.add(exchange)

    # --- RabbitMQ to bus ----------------------------------------------------------------------

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> dict[str, str]:
        self._filters = [parse_filter(value) for value, _ in filters]
        problems = {}
        for topic_filter in self._filters:
            problem = name_problem(topic_filter.value)
            if problem:
                problems[topic_filter.value] = problem
        self._filters = [f for f in self._filters if f.value not in problems]
        if self._up:
            await self._bind_all()
        return problems

    async def _bind_all(self) -> None:
        if not self.argentic:
            for topic_filter in self._filters:
                await self._bind(binding_key(topic_filter))
            return
        names = {f.value for f in self._filters if not f.is_wildcard}
        names |= {name for name in self._learned if any(f.matches(name) for f in self._filters)}
        for name in sorted(names):
            if name not in self._declared:
                await self._declare(name)
            await self._bind(name)

    async def _bind(self, name: str) -> None:
        """Bind our queue to an exchange (argentic) or with a binding key (amq.topic)."""
        if name in self._bound or self._consuming is None:
            return
        if self.argentic:
            await self._consuming.queue_bind(self.queue, name, routing_key="")
        else:
            await self._consuming.queue_bind(self.queue, "amq.topic", routing_key=name)
        self._bound.add(name)

    async def _received(self, session: int, message: DeliveredMessage) -> None:
        delivery = message.delivery
        assert isinstance(delivery, spec.Basic.Deliver)
        tag = delivery.delivery_tag

        def ack() -> None:
            self._acknowledge(session, tag)

        name = delivery.exchange if self.argentic else swap_separators(delivery.routing_key or "")
        topic = self.inbound.topic(name.encode("utf-8"))
        if topic is None or not self.inbound.payload(topic, message.body):
            ack()
            return
        if not any(topic_filter.matches(topic) for topic_filter in self._filters):
            ack()  # a binding left on our queue by an earlier configuration
            return
        self._callbacks.on_message(topic, message.body, ack)
