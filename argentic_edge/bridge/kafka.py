"""KafkaLink: one Kafka uplink through aiokafka, pipelined both ways.

Imported only by the factory's ``kafka`` branch, so aiokafka is loaded only when a Kafka uplink
is configured.

Producing: records are keyed by the appliance's node id (Kafka keeps order per key), the value is
the Argentic JSON byte for byte, and two headers say the bus topic and which appliance wrote it.
Two producers, because acknowledgement is a setting of a whole producer: QoS>=1 goes through an
idempotent one with ``acks=all`` (no duplicates from its own retries), QoS 0 through one with
``acks=1``. ``publish`` never waits: publications go to one feeder task that builds batches of
them per topic (``batch_size``; the last one lingers ``linger_ms``) and hands each whole to the
producer; a batch's one future settles its publications when Kafka acknowledges it.

Consuming: one consumer group per appliance (``group_id``, by default from the node id), a
subscription to one pattern made of the routes' filters, and offsets committed only for records
the service has acknowledged (on the bus, or dropped and counted): a restart resumes where the
last one stopped, nothing replayed, nothing skipped. Records this appliance wrote (by header)
are acknowledged and never put back on the bus. A partition without a committed offset starts at
``auto_offset_reset`` when the group first reads; a topic that appears later is read from its
start, since all of it is newer than the group (topics appear as agents start, and the pattern
finds them only at the next metadata refresh).

A killed cluster comes back on other broker addresses: aiokafka keeps asking the old ones, so a
watchdog declares the link lost when no broker answers, and the next ``connect`` bootstraps anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from argentic_edge.bridge.kafkanames import KafkaNameError, TopicMap
from argentic_edge.bridge.link import (
    ConnectError,
    LinkCallbacks,
    LinkSession,
    Publication,
)
from argentic_edge.bridge.tls import tls_context
from argentic_edge.config import KafkaConfig

log = logging.getLogger(__name__)

HEADER_TOPIC = "argentic-topic"  # the bus topic, so no consumer has to reverse the name mapping
HEADER_NODE = "argentic-edge-node"  # the appliance that wrote the record
WINDOW = 4096  # QoS>=1 records in flight: enough to fill batches, bounded for the outbox's sake
QOS0_BACKLOG = 65536  # QoS 0 records waiting for the feeder before new ones are refused
MAX_REQUEST = 1024 * 1024  # bytes: the producers' max_request_size (Kafka's default)
FETCH_RECORDS = 2000  # records per fetch handed to the service in one go
PROBE_INTERVAL = 2.0  # seconds between checks that some broker still answers
STOP_TIMEOUT = 2.0
FETCHER = "kafka-fetcher"
NAME_CACHE = 4096  # bus topics whose Kafka names are remembered


@dataclass(eq=False)
class _Offsets:
    """One partition's records handed to the service, and the offset safe to commit: every record
    below it is acknowledged (acknowledgements may come out of order)."""

    pending: deque[int] = field(default_factory=deque)
    acked: set[int] = field(default_factory=set)
    safe: int | None = None
    committed: int | None = None
    high_watermark: int | None = None

    @property
    def resume_from(self) -> int | None:
        """Where the group goes on: past every acknowledged record, at the first one not yet."""
        if self.pending:
            return self.pending[0]
        return self.safe if self.safe is not None else self.committed

    def take(self, offset: int) -> None:
        self.pending.append(offset)

    def ack(self, offset: int) -> bool:
        """True if the safe offset moved."""
        self.acked.add(offset)
        moved = False
        while self.pending and self.pending[0] in self.acked:
            first = self.pending.popleft()
            self.acked.discard(first)
            self.safe = first + 1
            moved = True
        return moved


@dataclass(eq=False)
class _Session:
    """The clients of one connection; a lost session's late callbacks are ignored."""

    reliable: Any  # AIOKafkaProducer, acks=all + idempotence
    fast: Any  # AIOKafkaProducer, acks=1
    consumer: Any = None
    alive: bool = True
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    offsets: dict[Any, _Offsets] = field(default_factory=dict)
    wake_commit: asyncio.Event = field(default_factory=asyncio.Event)
    assigned: set[Any] = field(default_factory=set)  # partitions placed by _assigned
    # per (reliable, Kafka name): the batch records may still join, and their publications
    batches: dict[tuple[bool, str], tuple[Any, list[Publication]]] = field(default_factory=dict)


class KafkaLink:
    """The Link (bridge/link.py) for one Kafka cluster."""

    def __init__(
        self, config: KafkaConfig, callbacks: LinkCallbacks, *, client_id: str, node_id: str
    ) -> None:
        self.config = config
        self.callbacks = callbacks
        self.client_id = client_id
        self.node_id = node_id
        self.group_id = config.group_id or f"argentic-edge-{node_id}"
        self.names = TopicMap(config.topic_map.separator, config.topic_map.escape)
        self.servers = config.servers
        self._key = node_id.encode()
        self._node_header = (HEADER_NODE, self._key)
        self._session: _Session | None = None
        self._queue: deque[tuple[Publication, str]] = deque()
        self._wake_feeder = asyncio.Event()
        self._waiting_topics: dict[str, deque[tuple[Publication, str]]] = {}
        self._name_cache: dict[str, str] = {}
        self._partitions: dict[str, tuple[int, int]] = {}  # topic -> (partition count, ours)
        self._topics_at_start: set[str] | None = None  # Kafka's topics at the first subscribe
        self.own_records_skipped = 0
        self.undecodable_names = 0
        self.last_client_settings: dict[str, dict[str, Any]] = {}

    @property
    def where(self) -> str:
        return "kafka://" + ",".join(self.servers)

    # --- connecting -------------------------------------------------------------------------

    def client_settings(self) -> dict[str, Any]:
        """What every client gets: the brokers, who we are, TLS and SASL."""
        config = self.config
        settings: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "client_id": self.client_id,
            "request_timeout_ms": int(config.request_timeout * 1000),
            "metadata_max_age_ms": int(config.metadata_refresh * 1000),
            "security_protocol": "PLAINTEXT",
        }
        tls = config.tls_params is not None
        if tls:
            assert config.tls_params is not None
            settings["ssl_context"] = tls_context(config.tls_params, "tls_params")
            settings["security_protocol"] = "SSL"
        if config.username:
            settings["security_protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
            settings["sasl_mechanism"] = config.sasl_mechanism
            settings["sasl_plain_username"] = config.username
            settings["sasl_plain_password"] = (
                config.password.reveal() if config.password is not None else ""
            )
        return settings

    async def connect(self) -> LinkSession:
        if not self.servers:
            raise ConnectError("no broker_address: give the Kafka uplink its bootstrap servers")
        self._retire()
        common = self.client_settings()
        batching = {
            "linger_ms": self.config.linger_ms,
            "max_batch_size": self.config.batch_size,
            "max_request_size": MAX_REQUEST,
        }
        session = _Session(
            reliable=AIOKafkaProducer(**common, **batching, acks="all", enable_idempotence=True),
            fast=AIOKafkaProducer(
                **{**common, "client_id": f"{self.client_id}-qos0"}, **batching, acks=1
            ),
        )
        self.last_client_settings = {"reliable": session.reliable, "fast": session.fast}
        try:
            await asyncio.wait_for(
                asyncio.gather(session.reliable.start(), session.fast.start()),
                self.config.request_timeout,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            await _stop_session(session)
            raise ConnectError(f"cannot reach Kafka at {self.where}: {_describe(exc)}") from None
        self._session = session
        session.tasks += [
            asyncio.create_task(self._feed(session), name="kafka-feeder"),
            asyncio.create_task(self._watch(session), name="kafka-watchdog"),
        ]
        brokers = len(session.reliable.client.cluster.brokers())
        return LinkSession(
            description=f"Kafka ({brokers} broker{'s' * (brokers != 1)})",
            window=WINDOW,
            echoes=False,  # our own records are recognised by header and never come back
        )

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> dict[str, str]:
        session = self._session
        if session is None or not filters:
            return {}
        problems: dict[str, str] = {}
        usable = []
        for topic_filter, _qos in filters:
            literal = topic_filter.split("/+")[0].split("/#")[0].rstrip("#+")
            try:
                if literal:
                    self.names.to_kafka(literal)
                usable.append(topic_filter)
            except KafkaNameError as exc:
                problems[topic_filter] = str(exc)
        if not usable:
            return problems
        pattern = self.names.subscription(usable)
        consumer = AIOKafkaConsumer(
            **self.client_settings(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.config.auto_offset_reset,
            max_poll_records=FETCH_RECORDS,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
        )
        self.last_client_settings["consumer"] = consumer
        try:
            await asyncio.wait_for(consumer.start(), self.config.request_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await _quietly(consumer.stop())
            raise ConnectError(f"the Kafka consumer cannot start: {_describe(exc)}") from None
        session.consumer = consumer
        if self._topics_at_start is None:
            try:
                self._topics_at_start = set(await consumer.topics())
            except KafkaError as exc:
                await _quietly(consumer.stop())
                raise ConnectError(f"Kafka does not list its topics: {_describe(exc)}") from None
        consumer.subscribe(pattern=pattern.pattern, listener=_Rebalance(self, session))
        session.tasks += [
            asyncio.create_task(self._fetch(session), name=FETCHER),
            asyncio.create_task(self._commit_loop(session), name="kafka-committer"),
        ]
        return problems

    # --- bus -> Kafka -----------------------------------------------------------------------

    def _kafka_name(self, topic: str) -> str:
        """``names.to_kafka``, remembered: a few topics carry nearly all the traffic."""
        name = self._name_cache.get(topic)
        if name is None:
            name = self.names.to_kafka(topic)
            if len(self._name_cache) >= NAME_CACHE:
                self._name_cache.clear()
            self._name_cache[topic] = name
        return name

    def publish(self, publication: Publication) -> None:
        try:
            name = self._kafka_name(publication.topic)
        except KafkaNameError as exc:
            self.callbacks.on_settled(publication.token, f"{exc.reason}: {exc}")
            return
        if publication.qos == 0 and len(self._queue) >= QOS0_BACKLOG:
            self.callbacks.on_settled(publication.token, "not_connected: the producer is behind")
            return
        self._queue.append((publication, name))
        self._wake_feeder.set()

    async def _feed(self, session: _Session) -> None:
        """Hand queued publications to the producers as batches, in order per topic; a topic
        whose metadata is not known yet waits aside (with what follows it on that topic), never
        in front of others."""
        queue = self._queue
        while session.alive:
            if not queue:
                self._wake_feeder.clear()
                await self._wake_feeder.wait()
                continue
            runs: dict[tuple[bool, str], list[Publication]] = {}
            while queue:
                publication, name = queue.popleft()
                waiting = self._waiting_topics.get(name)
                if waiting is not None:
                    waiting.append((publication, name))
                else:
                    runs.setdefault((publication.qos > 0, name), []).append(publication)
            for (reliable, name), publications in runs.items():
                waiting = self._waiting_topics.get(name)
                producer = session.reliable if reliable else session.fast
                if waiting is not None:
                    waiting.extend((publication, name) for publication in publications)
                elif producer.client.cluster.partitions_for_topic(name) is None:
                    self._waiting_topics[name] = deque((p, name) for p in publications)
                    session.tasks.append(asyncio.create_task(self._await_topic(session, name)))
                else:
                    await self._send(session, reliable, publications, name)

    async def _await_topic(self, session: _Session, name: str) -> None:
        """Learn a new topic's partitions (Kafka creates it on first use where allowed), then
        put what waited for it back in front of the queue, in order."""
        waiting = self._waiting_topics[name]
        try:
            await session.reliable.partitions_for(name)
            await session.fast.partitions_for(name)
        except KafkaError as exc:
            del self._waiting_topics[name]
            for publication, _ in waiting:
                self.callbacks.on_settled(
                    publication.token, f"broker_refused: {name!r}: {_describe(exc)}"
                )
            return
        if session.alive:
            del self._waiting_topics[name]
            self._queue.extendleft(reversed(waiting))
            self._wake_feeder.set()

    async def _send(
        self,
        session: _Session,
        reliable: bool,
        publications: list[Publication],
        name: str,
    ) -> None:
        """Records into batches built here, handed whole to the producer (``send_batch``): a
        record-by-record ``send()`` costs a coroutine, a metadata lookup and a future per
        record, a third of the uplink's time under load. As a producer's own batch, the open
        one per topic takes records until it is full (``batch_size``) or sent (after
        ``linger_ms``); one future settles all of them. A record over Kafka's request limit is
        refused alone; one over ``batch_size`` goes in a batch of its own, so a refusal never
        takes its neighbours with it."""
        if not session.alive:  # lost while the feeder sent an earlier topic's records
            self._settle_unsent(publications)
            return
        producer = session.reliable if reliable else session.fast
        partition = self._partition(producer, name)
        key = (reliable, name)
        batch, taken = session.batches.get(key, (None, []))
        for index, publication in enumerate(publications):
            size = len(publication.payload)
            if size > MAX_REQUEST:
                self.callbacks.on_settled(
                    publication.token,
                    f"broker_refused: {size} bytes is over Kafka's request limit "
                    f"({MAX_REQUEST} bytes)",
                )
                continue
            alone = size > self.config.batch_size
            if batch is not None and not alone and self._append(batch, publication):
                taken.append(publication)
                continue
            if batch is not None:
                batch.close()  # what follows may not overtake this record by joining it
            batch, taken = producer.create_batch(), [publication]
            self._append(batch, publication)  # a batch always takes its first record
            if alone:
                batch.close()
            if await self._send_batch(session, producer, batch, taken, name, partition):
                session.batches[key] = (batch, taken)
                continue
            session.batches.pop(key, None)
            batch = None
            if session is not self._session:  # lost (retired) by the refusal
                self._settle_unsent(publications[index + 1 :])
                return

    def _append(self, batch: Any, publication: Publication) -> bool:
        """False when the batch is full."""
        headers = [(HEADER_TOPIC, publication.topic.encode("utf-8")), self._node_header]
        added = batch.append(
            timestamp=None, key=self._key, value=publication.payload, headers=headers
        )
        return added is not None

    async def _send_batch(
        self,
        session: _Session,
        producer: Any,
        batch: Any,
        publications: list[Publication],
        name: str,
        partition: int | None,
    ) -> bool:
        """False when the producer refused it (its publications are settled or the link lost)."""
        try:
            future = await producer.send_batch(batch, name, partition=partition)
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                self._settle_unsent(publications)
                self._lose(session, f"Kafka stopped taking records: {_describe(exc)}")
            else:
                for publication in publications:
                    self.callbacks.on_settled(
                        publication.token, f"broker_refused: {_describe(exc)}"
                    )
            return False
        future.add_done_callback(partial(self._delivered, session, publications))
        return True

    def _settle_unsent(self, publications: Iterable[Publication]) -> None:
        """QoS 0 records a lost connection caught are dropped and counted; QoS>=1 ones the
        service sends again after ``on_lost``."""
        for publication in publications:
            if publication.qos == 0:
                self.callbacks.on_settled(publication.token, "not_connected")

    def _partition(self, producer: Any, name: str) -> int | None:
        """The partition Kafka's default partitioner gives our key on ``name``, worked out once
        per partition count (hashing the same key for every record costs a third of a send)."""
        cluster = producer.client.cluster
        partitions = cluster.partitions_for_topic(name)
        if not partitions:
            return None
        known = self._partitions.get(name)
        if known is not None and known[0] == len(partitions):
            return known[1]
        available = cluster.available_partitions_for_topic(name)
        chosen = int(DefaultPartitioner()(self._key, sorted(partitions), list(available)))
        self._partitions[name] = (len(partitions), chosen)
        return chosen

    def _delivered(
        self, session: _Session, publications: list[Publication], future: asyncio.Future[Any]
    ) -> None:
        if not session.alive or future.cancelled():
            return
        exc = future.exception()
        settled = self.callbacks.on_settled
        if exc is None:
            for publication in publications:
                settled(publication.token, None)
        elif getattr(exc, "retriable", False) or isinstance(exc, TimeoutError):
            self._settle_unsent(publications)
            self._lose(session, f"Kafka did not acknowledge in time: {_describe(exc)}")
        else:
            for publication in publications:
                settled(publication.token, f"broker_refused: {_describe(exc)}")

    # --- Kafka -> bus -----------------------------------------------------------------------

    async def _fetch(self, session: _Session) -> None:
        consumer = session.consumer
        while session.alive:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
            except KafkaError as exc:
                if not getattr(exc, "retriable", False):
                    self._lose(session, f"the Kafka consumer failed: {_describe(exc)}")
                    return
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                offsets = session.offsets.setdefault(tp, _Offsets())
                offsets.high_watermark = consumer.highwater(tp)
                for record in records:
                    self._deliver(session, tp, offsets, record)

    def _deliver(self, session: _Session, tp: Any, offsets: _Offsets, record: Any) -> None:
        offsets.take(record.offset)
        headers = dict(record.headers or ())
        if headers.get(HEADER_NODE) == self._key:
            self.own_records_skipped += 1
            self._acked(session, tp, offsets, record.offset)
            return
        topic = _header_topic(headers.get(HEADER_TOPIC))
        if topic is None:
            try:
                topic = self.names.to_bus(record.topic)
            except KafkaNameError as exc:
                if not self.undecodable_names:
                    log.warning("kafka: %s; such records are skipped (counted)", exc)
                self.undecodable_names += 1
                self._acked(session, tp, offsets, record.offset)
                return
        ack = partial(self._acked, session, tp, offsets, record.offset)
        self.callbacks.on_message(topic, record.value or b"", ack)

    def _acked(self, session: _Session, tp: Any, offsets: _Offsets, offset: int) -> None:
        if offsets.ack(offset) and session.offsets.get(tp) is offsets:
            session.wake_commit.set()

    async def _commit_loop(self, session: _Session) -> None:
        """Commit what the service acknowledged, one commit in flight, coalescing the rest."""
        while session.alive:
            await session.wake_commit.wait()
            session.wake_commit.clear()
            try:
                await self._commit(session)
            except KafkaError as exc:
                log.debug("kafka: commit failed, trying again: %s", exc)
                session.wake_commit.set()
                await asyncio.sleep(0.5)

    async def _commit(self, session: _Session, only: set[Any] | None = None) -> None:
        due = {
            tp: offsets
            for tp, offsets in session.offsets.items()
            if (only is None or tp in only)
            and offsets.safe is not None
            and offsets.safe != offsets.committed
        }
        if not due:
            return
        await session.consumer.commit(
            {tp: OffsetAndMetadata(offsets.safe, "") for tp, offsets in due.items()}
        )
        for offsets in due.values():
            offsets.committed = offsets.safe

    async def _assigned(self, session: _Session, assigned: set[Any]) -> None:
        """Where each partition without a committed offset starts (see the module's text)."""
        consumer = session.consumer
        placed = {}
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is not None:
                session.offsets.setdefault(tp, _Offsets(committed=committed))
                continue
            if (
                tp.topic in (self._topics_at_start or ())
                and self.config.auto_offset_reset == "latest"
            ):
                await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_beginning(tp)
            placed[tp] = OffsetAndMetadata(await consumer.position(tp), "")
        if placed:  # the start is the group's from now on: a rebalance or restart keeps it
            await consumer.commit(placed)
            for tp, start in placed.items():
                session.offsets.setdefault(tp, _Offsets(committed=start.offset))
        session.assigned |= set(assigned)

    async def _revoked(self, session: _Session, revoked: set[Any]) -> None:
        with contextlib.suppress(KafkaError):
            await self._commit(session, only=set(revoked))
        for tp in revoked:
            session.offsets.pop(tp, None)
        session.assigned -= set(revoked)

    # --- losing and closing -----------------------------------------------------------------

    async def _watch(self, session: _Session) -> None:
        """Declare the link lost when no known broker answers for ``request_timeout``."""
        silent_since: float | None = None
        client = session.reliable.client
        while session.alive:
            await asyncio.sleep(PROBE_INTERVAL)
            nodes = [broker.nodeId for broker in client.cluster.brokers()]
            answers = [await client.ready(node) for node in nodes]
            if any(answers):
                silent_since = None
                continue
            now = time.monotonic()
            silent_since = silent_since or now
            if now - silent_since >= min(self.config.request_timeout, 2 * PROBE_INTERVAL):
                self._lose(session, f"no Kafka broker of {self.where} answers")
                return

    def _lose(self, session: _Session, reason: str) -> None:
        if not session.alive or session is not self._session:
            return
        log.info("kafka: %s", reason)
        self._retire()
        self.callbacks.on_lost(reason)

    def _retire(self) -> None:
        """Stop the current session's clients in the background; its callbacks go quiet."""
        session, self._session = self._session, None
        if session is None:
            return
        session.alive = False
        for task in session.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._settle_unsent(publication for publication, _ in self._queue)
        for waiting in self._waiting_topics.values():
            self._settle_unsent(publication for publication, _ in waiting)
        self._queue.clear()
        self._waiting_topics.clear()
        asyncio.get_running_loop().create_task(_stop_session(session))

    async def close(self) -> None:
        """Let what is in flight land, commit what the bus has, leave the group."""
        session, self._session = self._session, None
        if session is None:
            return
        for task in session.tasks:  # nothing more is read; what was read gets acknowledged
            if task.get_name() == FETCHER:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for _ in range(3):  # the service acknowledges the last fetch on its next turns
            await asyncio.sleep(0)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(session.reliable.flush(), session.fast.flush()), STOP_TIMEOUT
            )
        if session.consumer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._commit(session), STOP_TIMEOUT)
        session.alive = False
        for task in session.tasks:
            task.cancel()
        await _stop_session(session)

    def abort(self) -> None:
        self._retire()

    def status(self) -> dict[str, Any]:
        session = self._session
        partitions = []
        if session is not None:
            consumer = session.consumer
            assignment = consumer.assignment() if consumer is not None else set()
            for tp, offsets in sorted(session.offsets.items()):
                lag = None
                resume = offsets.resume_from
                if tp in assignment:  # highwater() refuses a partition a rebalance took away
                    offsets.high_watermark = consumer.highwater(tp) or offsets.high_watermark
                if offsets.high_watermark is not None and resume is not None:
                    lag = max(0, offsets.high_watermark - resume)
                partitions.append(
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": offsets.committed,
                        "high_watermark": offsets.high_watermark,
                        "lag": lag,
                    }
                )
        return {
            "group_id": self.group_id,
            "partitions_assigned": len(session.assigned) if session is not None else 0,
            "topic_map": {"separator": self.names.separator, "escape": self.names.escape},
            "consumer_lag": partitions,
            "waiting_for_topics": sorted(self._waiting_topics),
            "own_records_skipped": self.own_records_skipped,
            "undecodable_names": self.undecodable_names,
        }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """Commit before partitions go, choose where new ones start."""

    def __init__(self, link: KafkaLink, session: _Session) -> None:
        self.link = link
        self.session = session

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self.link._revoked(self.session, revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        await self.link._assigned(self.session, assigned)


def _header_topic(value: bytes | None) -> str | None:
    if not value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


async def _quietly(stopping: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stopping, STOP_TIMEOUT)


async def _stop_session(session: _Session) -> None:
    clients = [session.consumer, session.reliable, session.fast]
    await asyncio.gather(*(_quietly(client.stop()) for client in clients if client is not None))


__all__ = ["HEADER_NODE", "HEADER_TOPIC", "KafkaLink", "TopicPartition"]
