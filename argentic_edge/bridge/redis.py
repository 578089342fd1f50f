"""RedisLink: an uplink to Redis with redis-py's asyncio client, in one of two modes.

``pubsub`` (the default) is Argentic's own wire: ``PUBLISH <topic> <json>``, the channel exactly
the topic, the payload unchanged. Receiving subscribes what the routes name: ``SUBSCRIBE`` for a
topic, ``PSUBSCRIBE`` for a filter, its glob built so it matches everything the MQTT filter does
(``+`` and ``#`` become ``*``, glob characters of literal levels are escaped; ``a/#`` is the
channel ``a`` plus the pattern ``a/*``). A ``*`` also crosses ``/``, so each channel Redis
delivers is checked against the MQTT filters, and a channel matched by several of our
subscriptions (Redis delivers it once per subscription) is passed on once. Pub/sub keeps nothing:
what is published while nobody listens is gone, on both sides.

``streams`` makes Redis the durable hop: ``XADD`` (``MAXLEN ~`` bounded) to a stream named as
the topic, or to one configured stream whose entries carry the topic; reading with a consumer
group whose consumer name is stable across restarts, so a restarted appliance first reads what
it was handed and had not acknowledged, then what came since. ``XACK`` is sent only when the
service says the message is on the bus. Filters with wildcards find their streams with ``SCAN``
(``TYPE stream``) every few seconds.

All writes (publications and acknowledgements) of a loop tick go out in one pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from argentic_edge.bridge.batching import WINDOW, BatchingLink
from argentic_edge.bridge.link import ConnectError, LinkCallbacks, LinkSession, Publication
from argentic_edge.bridge.tls import describe_failure
from argentic_edge.config import RedisConfig
from argentic_edge.topics import TopicFilter, parse_filter

log = logging.getLogger(__name__)
TLS_SETTINGS = "the Redis uplink's tls_params"  # where a TLS fix goes, in failure messages

CONNECT_TIMEOUT = 10.0
KEEPALIVE = 5.0  # seconds between PINGs, so a dead server is noticed without traffic
READ_COUNT = 500  # stream entries per XREADGROUP
READ_BLOCK_MS = 1000
SCAN_INTERVAL = 5.0  # seconds between SCANs for the streams of wildcard filters
CHANNEL_CACHE = 10_000  # channels whose delivering subscription is remembered
GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


@dataclass(frozen=True)
class Glob:
    """One Redis subscription for an MQTT filter: a channel or a pattern, and its regex."""

    name: str
    pattern: bool
    regex: re.Pattern[str]
    filter: TopicFilter


def redis_subscriptions(topic_filter: TopicFilter) -> list[Glob]:
    """The channels and glob patterns that together match every topic the filter does."""
    levels = list(topic_filter.levels)
    multi = levels[-1] == "#"
    if multi:
        levels.pop()
    if not levels:  # "#": everything
        return [Glob("*", True, re.compile(".*", re.DOTALL), topic_filter)]
    glob = "/".join("*" if level == "+" else GLOB_SPECIAL.sub(r"\\\1", level) for level in levels)
    regex = "/".join(".*" if level == "+" else re.escape(level) for level in levels)
    wild = "+" in levels
    found = [Glob(glob, wild, re.compile(regex, re.DOTALL), topic_filter)]
    if multi:
        found.append(Glob(glob + "/*", True, re.compile(regex + "/.*", re.DOTALL), topic_filter))
    return found


def tls_arguments(config: RedisConfig) -> dict[str, Any]:
    """redis-py's ssl_* keywords from the seed's ``tls_params`` (redis-py takes no context)."""
    params = config.tls_params
    if params is None:
        return {}
    reqs = {"CERT_NONE": ssl.CERT_NONE, "CERT_OPTIONAL": ssl.CERT_OPTIONAL}
    versions = {
        "PROTOCOL_TLSv1_2": ssl.TLSVersion.TLSv1_2,
        "PROTOCOL_TLSv1_3": ssl.TLSVersion.TLSv1_3,
    }
    return {
        "ssl": True,
        "ssl_ca_certs": params.ca_certs,
        "ssl_certfile": params.certfile,
        "ssl_keyfile": params.keyfile,
        "ssl_cert_reqs": reqs.get(params.cert_reqs, ssl.CERT_REQUIRED),
        "ssl_check_hostname": params.cert_reqs != "CERT_NONE",
        "ssl_min_version": versions.get(params.tls_version),
        "ssl_ciphers": params.ciphers,
    }


class RedisLink(BatchingLink):
    """One Redis server; see the module docstring for the two modes."""

    def __init__(
        self,
        config: RedisConfig,
        callbacks: LinkCallbacks,
        *,
        client_id: str,
        node_id: str,
        consumer: str,
    ) -> None:
        """``client_id`` names the connection (``CLIENT LIST``); ``consumer`` is our name in the
        streams group. It must survive restarts and renames: what the group handed a consumer
        and it did not acknowledge is handed again only to a consumer of the same name."""
        tls = config.tls_params is not None
        super().__init__(
            callbacks, f"{'rediss' if tls else 'redis'}://{config.broker_address}:{config.port}"
        )
        self.config = config
        self.client_id = client_id
        self.consumer = consumer
        self.group = config.group or f"argentic-edge-{node_id}"
        self._client: aioredis.Redis | None = None
        self._globs: list[Glob] = []
        self._delivering: dict[str, str | None] = {}  # channel -> the subscription passing it on
        self._streams: dict[str, str] = {}  # stream -> next id to read ("0": own pending first)
        self._server = ""
        self._scanned = False
        self._reader: asyncio.Task[None] | None = None

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> LinkSession:
        if self.config.broker_address is None:
            raise ConnectError("no Redis server configured (broker_address)")
        password = self.config.password.reveal() if self.config.password else None
        client = aioredis.Redis(
            host=self.config.broker_address,
            port=self.config.port,
            db=self.config.db,
            username=self.config.username,
            password=password,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT + READ_BLOCK_MS / 1000,
            retry=Retry(NoBackoff(), 0),  # errors end the session; the service backs off
            client_name=self.client_id,
            **tls_arguments(self.config),
        )
        try:
            info = await asyncio.wait_for(client.info("server"), CONNECT_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            await client.aclose()
            raise ConnectError(self._failure(exc)) from None
        self._client = client
        self._server = str(info.get("redis_version", "?"))
        self._streams = dict.fromkeys(self._streams, "0")
        session = self._begin()
        self._spawn(self._keepalive(session))
        return LinkSession(f"Redis {self._server} ({self.config.mode})", WINDOW)

    def _failure(self, exc: BaseException) -> str:
        text = str(exc)
        if "WRONGPASS" in text or "NOAUTH" in text or "invalid username-password" in text:
            return f"{self.where} refused the credentials (check username and password)"
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, OSError | TimeoutError):
            return describe_failure(
                cause, self.where, self.config.tls_params is not None, TLS_SETTINGS
            )
        return f"cannot connect to {self.where}: {text}"

    async def _keepalive(self, session: int) -> None:
        while session == self._session and self._client is not None:
            await asyncio.sleep(KEEPALIVE)
            try:
                await self._client.ping()
            except (RedisError, OSError) as exc:
                self._lost(session, f"no answer to PING: {exc}")

    async def close(self) -> None:
        await self._stop_tasks()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def abort(self) -> None:
        self._cancel_tasks()
        client, self._client = self._client, None
        if client is not None:  # closing is all redis-py offers; it sends no goodbye anyway
            self._spawn(client.aclose())

    def status(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"mode": self.config.mode, "server": self._server or None}
        if self.config.mode == "streams":
            extra["group"] = self.group
            extra["streams"] = len(self._streams)
        else:
            extra["subscriptions"] = [glob.name for glob in self._globs]
        return {**extra, **self.batching_status()}

    # --- bus to Redis -------------------------------------------------------------------------

    async def _flush(self, batch: list[Publication], acks: list[tuple[str, bytes]]) -> None:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for publication in batch:
            if self.config.mode == "pubsub":
                pipe.publish(publication.topic, publication.payload)
            else:
                key, fields = self._entry(publication)
                pipe.xadd(key, fields, maxlen=self.config.stream_maxlen, approximate=True)
        for stream, entry_id in acks:
            pipe.xack(stream, self.group, entry_id)
        results = await pipe.execute(raise_on_error=False)
        for publication, result in zip(batch, results, strict=False):
            problem = None
            if isinstance(result, Exception):
                log.warning("%s: %s refused: %s", self.where, publication.topic, result)
                problem = "broker_refused"
            self._settle(publication.token, problem)

    def _entry(self, publication: Publication) -> tuple[str, dict[Any, Any]]:
        if self.config.stream:
            return self.config.stream, {"topic": publication.topic, "payload": publication.payload}
        return publication.topic, {"payload": publication.payload}

    # --- Redis to bus -------------------------------------------------------------------------

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> dict[str, str]:
        self._globs = [
            glob for value, _ in filters for glob in redis_subscriptions(parse_filter(value))
        ]
        self._delivering.clear()
        if self._up and self._globs:
            await self._start_reading(self._session)
        return {}

    async def _start_reading(self, session: int) -> None:
        """One reader per session: a new subscribe() replaces the one before."""
        if self._reader is not None:
            self._reader.cancel()
        if self.config.mode == "pubsub":
            await self._start_pubsub(session)
        else:
            await self._scan_streams()
            self._reader = self._spawn(self._read_streams(session))

    async def _start_pubsub(self, session: int) -> None:
        assert self._client is not None
        pubsub = self._client.pubsub()
        channels = [glob.name for glob in self._globs if not glob.pattern]
        patterns = [glob.name for glob in self._globs if glob.pattern]
        if channels:
            await pubsub.subscribe(*channels)
        if patterns:
            await pubsub.psubscribe(*patterns)
        self._reader = self._spawn(self._read_pubsub(session, pubsub))

    async def _read_pubsub(self, session: int, pubsub: Any) -> None:
        try:
            while session == self._session:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message["type"] in ("message", "pmessage"):
                    self._from_pubsub(message)
        except (RedisError, OSError) as exc:
            self._lost(session, f"subscription ended: {exc}")
        finally:
            await pubsub.aclose()

    def _from_pubsub(self, message: dict[str, Any]) -> None:
        raw: bytes = message["channel"]
        topic = self.inbound.topic(raw)
        if topic is None:
            return
        via = message["pattern"] or raw
        if self._delivering_subscription(topic) != via.decode("utf-8", "replace"):
            return  # outside our MQTT filters, or passed on through another subscription
        payload: bytes = message["data"]
        if self.inbound.payload(topic, payload):
            self._callbacks.on_message(topic, payload, None)

    def _delivering_subscription(self, topic: str) -> str | None:
        """The first of our subscriptions that Redis matches and whose MQTT filter matches too."""
        if topic in self._delivering:
            return self._delivering[topic]
        chosen = next(
            (
                glob.name
                for glob in self._globs
                if glob.regex.fullmatch(topic) and glob.filter.matches(topic)
            ),
            None,
        )
        if len(self._delivering) >= CHANNEL_CACHE:
            self._delivering.clear()
        self._delivering[topic] = chosen
        return chosen

    # --- streams ------------------------------------------------------------------------------

    async def _scan_streams(self) -> None:
        """Find the streams to read and make sure our group exists on each."""
        assert self._client is not None
        if self.config.stream:
            names = [self.config.stream]
        else:
            names = [glob.name for glob in self._globs if not glob.pattern]
            for glob in self._globs:
                if glob.pattern:
                    async for key in self._client.scan_iter(match=glob.name, _type="stream"):
                        names.append(key.decode("utf-8", "replace"))
        first_scan, self._scanned = not self._scanned, True
        for name in names:
            if name in self._streams:
                continue
            if not self.config.stream and self._delivering_subscription(name) is None:
                continue
            try:
                # A stream seen at the first scan starts at its end; one that appeared later
                # is read from its beginning: all of it was written after we started looking.
                await self._client.xgroup_create(
                    name, self.group, id="$" if first_scan else "0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._streams[name] = "0"

    async def _read_streams(self, session: int) -> None:
        assert self._client is not None
        client = self._client
        scanned = asyncio.get_running_loop().time()
        try:
            while session == self._session:
                if asyncio.get_running_loop().time() - scanned > SCAN_INTERVAL:
                    await self._scan_streams()
                    scanned = asyncio.get_running_loop().time()
                if not self._streams:
                    await asyncio.sleep(READ_BLOCK_MS / 1000)
                    continue
                catching_up = any(position != ">" for position in self._streams.values())
                replies = await client.xreadgroup(
                    self.group,
                    self.consumer,
                    dict(self._streams),  # type: ignore[arg-type]
                    count=READ_COUNT,
                    block=None if catching_up else READ_BLOCK_MS,
                )
                self._from_streams(session, replies or [])
        except (RedisError, OSError) as exc:
            self._lost(session, f"stream read ended: {exc}")

    def _from_streams(self, session: int, replies: Any) -> None:
        """RESP2's ``[[stream, [(id, fields), ...]], ...]`` (the client speaks RESP2)."""
        for raw_stream, entries in replies:
            stream = raw_stream.decode("utf-8", "replace")
            if self._streams.get(stream) != ">":  # reading what we were handed before
                # and did not acknowledge: on from the last one, then the new ones (">")
                self._streams[stream] = entries[-1][0].decode() if entries else ">"
            for entry_id, fields in entries:
                if fields is None:  # pending entry trimmed away by MAXLEN
                    continue
                self._from_entry(session, stream, entry_id, fields)

    def _from_entry(
        self, session: int, stream: str, entry_id: bytes, fields: dict[bytes, bytes]
    ) -> None:
        def ack() -> None:
            self._acknowledge(session, (stream, entry_id))

        raw_topic = fields.get(b"topic") if self.config.stream else stream.encode("utf-8")
        payload = fields.get(b"payload")
        if raw_topic is None or payload is None:
            self.inbound.drop("malformed_entry", f"{stream} {entry_id!r}")
            ack()
            return
        topic = self.inbound.topic(raw_topic)
        if topic is None or not self.inbound.payload(topic, payload):
            ack()
            return
        if self.config.stream and not any(glob.filter.matches(topic) for glob in self._globs):
            ack()  # the shared stream carries topics our routes do not want
            return
        self._callbacks.on_message(topic, payload, ack)
