"""What one protocol gives the shared uplink machinery: the ``Link`` interface.

The uplink service (routes, outbox, loop guard, back-off, counters, status) is the same for every
protocol; a link only connects, subscribes, hands publications to its client library without
waiting for each one, and reports back through callbacks. Keeping the interface push-based with
callbacks (rather than one awaited call per message) is what lets every protocol pipeline: MQTT
keeps a window of QoS>=1 publications in flight, Kafka batches in its producer, Redis pipelines,
RabbitMQ collects publisher confirms.

Topics crossing this interface are always in MQTT form (``a/b/c``, filters with ``+``/``#``),
after the routes' prefix rewriting: a link maps them to its own names (Kafka ``a.b.c``, an AMQP
exchange, a Redis channel or glob) and back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from argentic_edge.errors import EdgeError

__all__ = [
    "Acknowledge",
    "ConnectError",
    "Link",
    "LinkCallbacks",
    "LinkError",
    "LinkSession",
    "Publication",
]


class LinkError(EdgeError):
    """Something an uplink cannot do as configured, said so a user can act on it."""


class ConnectError(LinkError):
    """A connection attempt failed; the service backs off and tries again.

    ``fallback`` asks the service to make a new link with the next protocol variant (MQTT 5 to
    3.1.1) and try again at once.
    """

    def __init__(self, message: str, *, fallback: bool = False) -> None:
        super().__init__(message)
        self.fallback = fallback


@dataclass(frozen=True)
class LinkSession:
    """What the broker said when it accepted us."""

    description: str  # for the status page: "MQTT 5", "Kafka (3 brokers)", "Redis 7.2"
    window: int  # QoS>=1 publications the service may keep in flight at once
    resumed: bool = False  # the broker kept our session (MQTT persistent session, Kafka group)
    # What we publish comes back on our own matching subscriptions (MQTT 3.1.1, Redis, Kafka),
    # so the service fingerprints it to drop the echo; False where the broker stops it (MQTT 5
    # no-local).
    echoes: bool = True


@dataclass(slots=True, eq=False)
class Publication:
    """One message for the broker, in MQTT form; ``token`` is the service's own handle, given
    back unchanged in ``on_settled``."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    token: object


Acknowledge = Callable[[], None]
"""Called by the service once a received message is on the bus (or dropped and counted), so a
link can commit its offset, XACK or AMQP ack only then: a restart resumes, never skips."""


@dataclass(frozen=True)
class LinkCallbacks:
    """How a link reports back; all are called in the event loop's thread, never awaited.

    - ``on_message(topic, payload, ack)``: a message from the broker, topic in MQTT form; ``ack``
      is None where the protocol has nothing to acknowledge. A topic whose bytes are not UTF-8
      is given decoded with ``surrogateescape``: the service counts it (``invalid_utf8``) and
      acknowledges it, so one bad message never blocks a partition or a queue.
    - ``on_settled(token, problem)``: a publication is done: ``problem`` None when the broker has
      it (QoS>=1: acknowledged; QoS 0: written), else a drop reason key of the service's
      ``DROP_REASONS`` (``broker_refused``, ``not_connected``...) or a short text.
    - ``on_lost(reason)``: an established connection ended without ``close()``. Publications not
      settled by then are given back to the outbox by the service and sent again later.
    """

    on_message: Callable[[str, bytes, Acknowledge | None], None]
    on_settled: Callable[[object, str | None], None]
    on_lost: Callable[[str], None]


class Link(Protocol):
    """One connection to one broker. The service makes a link per uplink and keeps it across
    reconnections (``connect`` is called again after ``on_lost``), so a protocol can keep
    session state such as MQTT's in-flight messages or Kafka's consumer group."""

    @property
    def where(self) -> str:
        """The broker's address as the status page shows it (no credentials)."""
        ...

    async def connect(self) -> LinkSession:
        """Open the connection; ConnectError with a sentence a user can act on if it fails."""
        ...

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> dict[str, str]:
        """Subscribe to these ``(filter, qos)`` pairs; returns a problem text per filter the
        broker (or the protocol's naming rules) refused, nothing for those that work."""
        ...

    def publish(self, publication: Publication) -> None:
        """Hand over one publication without waiting; it is settled through ``on_settled``."""
        ...

    async def close(self) -> None:
        """Say goodbye cleanly, within a couple of seconds."""
        ...

    def abort(self) -> None:
        """Drop the connection now, without goodbye (a failed attempt, a hung broker)."""
        ...

    def status(self) -> dict[str, Any]:
        """Protocol-specific extras for the uplink's status (Kafka lag per partition...)."""
        ...
