"""KafkaLink on librdkafka's mock cluster, driven through the Link interface by a small harness.

The harness is what the uplink service does with a link: it collects messages (acknowledging
each once "on the bus"), settlements and losses. Independent aiokafka clients on the same
cluster check what Kafka itself holds: the mapped topic name, the key, the headers, the value
byte for byte, the committed offsets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from argentic_edge.bridge.kafka import HEADER_NODE, HEADER_TOPIC, MAX_REQUEST, KafkaLink
from argentic_edge.bridge.link import ConnectError, LinkCallbacks, Publication
from argentic_edge.config import KafkaConfig, Secret, TlsParams
from tests.support.bridge import wait_until
from tests.support.kafka import MockKafka, read_topic, restartable
from tests.support.pki import Pki

NODE = "0123456789abcdef0123456789abcdef"


@dataclass
class Harness:
    """The service's side of the Link interface, recorded."""

    auto_ack: bool = True
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    unacked: list[Callable[[], None]] = field(default_factory=list)
    settled: dict[object, str | None] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    def callbacks(self) -> LinkCallbacks:
        return LinkCallbacks(self._message, self._settled, self.lost.append)

    def _message(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        self.messages.append((topic, payload))
        assert ack is not None
        if self.auto_ack:
            ack()
        else:
            self.unacked.append(ack)

    def _settled(self, token: object, problem: str | None) -> None:
        assert token not in self.settled, "settled twice"
        self.settled[token] = problem


@pytest.fixture
def cluster() -> Iterator[MockKafka]:
    mock = MockKafka().start()
    yield mock
    mock.stop()


def config_for(cluster: MockKafka, **overrides: Any) -> KafkaConfig:
    return replace(
        KafkaConfig(broker_address=tuple(cluster.bootstrap.split(",")), metadata_refresh=1.0),
        **overrides,
    )


@pytest.fixture
async def link_factory(cluster: MockKafka) -> AsyncIterator[Callable[..., KafkaLink]]:
    made: list[KafkaLink] = []

    def make(harness: Harness, **overrides: Any) -> KafkaLink:
        link = KafkaLink(
            config_for(cluster, **overrides),
            harness.callbacks(),
            client_id="argentic-edge-test",
            node_id=NODE,
        )
        made.append(link)
        return link

    yield make
    for link in made:
        await link.close()


@pytest.fixture
async def raw_producer(cluster: MockKafka) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    yield producer
    await producer.stop()


UNTIL = 20.0  # seconds: the mock cluster rebalances and refreshes metadata slowly


async def until(condition: Callable[[], bool], timeout: float = UNTIL, what: str = "") -> None:
    await wait_until(condition, timeout, what or "the condition")


async def test_bus_to_kafka_keyed_headered_byte_for_byte_under_the_mapped_name(
    cluster: MockKafka, link_factory: Callable[..., KafkaLink]
) -> None:
    harness = Harness()
    link = link_factory(harness)
    session = await link.connect()
    assert session.description == "Kafka (1 broker)" and session.window > 100
    payloads = [b'{"type":"tool_call","n":%d,"x":"\\u00e9 \xc3\xa9"}' % n for n in range(300)]
    tokens = [object() for _ in payloads]
    for n, (token, payload) in enumerate(zip(tokens, payloads, strict=True)):
        link.publish(Publication("agent/tools/call/my_tool", payload, n % 2, False, token))
    await until(lambda: len(harness.settled) == len(tokens), what="all settled")
    assert set(harness.settled.values()) == {None}
    records = await read_topic(cluster.bootstrap, "agent.tools.call.my_tool", len(payloads))
    values = [r.value for r in records]
    assert sorted(values) == sorted(payloads)
    # One key: one partition; in order per QoS (two producers, one per acknowledgement level).
    for qos in (0, 1):
        assert [v for v in values if v in payloads[qos::2]] == payloads[qos::2]
    assert {r.key for r in records} == {NODE.encode()}
    assert {tuple(r.headers) for r in records} == {
        ((HEADER_TOPIC, b"agent/tools/call/my_tool"), (HEADER_NODE, NODE.encode()))
    }


async def test_batches_keep_the_order_and_a_refused_record_takes_no_neighbour_with_it(
    cluster: MockKafka, link_factory: Callable[..., KafkaLink]
) -> None:
    harness = Harness()
    link = link_factory(harness, batch_size=4096)
    await link.connect()
    sizes = [100] * 50 + [10_000] + [100] * 50 + [MAX_REQUEST + 1] + [100] * 50  # 3 batch sizes
    payloads = [b"%05d" % n + b"x" * (size - 5) for n, size in enumerate(sizes)]
    tokens = [object() for _ in payloads]
    for token, payload in zip(tokens, payloads, strict=True):
        link.publish(Publication("agent/batched", payload, 1, False, token))
    await until(lambda: len(harness.settled) == len(tokens), what="all settled")
    too_large = tokens[sizes.index(MAX_REQUEST + 1)]
    assert str(harness.settled.pop(too_large)).startswith("broker_refused: ")
    assert set(harness.settled.values()) == {None}
    records = await read_topic(cluster.bootstrap, "agent.batched", len(payloads) - 1)
    assert [r.value for r in records] == [p for p in payloads if len(p) <= MAX_REQUEST]
    assert len({r.offset for r in records}) == len(records)


async def test_topics_without_a_kafka_name_are_refused_with_their_reason(
    link_factory: Callable[..., KafkaLink],
) -> None:
    harness = Harness()
    link = link_factory(harness)
    await link.connect()
    long_topic, reserved = object(), object()
    link.publish(Publication("agent/" + "x" * 250, b"{}", 1, False, long_topic))
    link.publish(Publication("__consumer_offsets", b"{}", 1, False, reserved))
    assert harness.settled[long_topic] is not None
    assert str(harness.settled[long_topic]).startswith("kafka_name_too_long: ")
    assert str(harness.settled[reserved]).startswith("kafka_name_reserved: ")


async def subscribed(link: KafkaLink, filters: list[tuple[str, int]]) -> None:
    assert await link.subscribe(filters) == {}
    await until(lambda: link.status()["partitions_assigned"] > 0, what="partitions assigned")


async def test_kafka_to_bus_by_pattern_skipping_our_own_records(
    cluster: MockKafka, link_factory: Callable[..., KafkaLink], raw_producer: AIOKafkaProducer
) -> None:
    await raw_producer.send_and_wait("agent.status.info", b'{"before":1}')  # exists, read: latest
    harness = Harness()
    link = link_factory(harness)
    await link.connect()
    await subscribed(link, [("agent/#", 1)])
    await raw_producer.send_and_wait("agent.status.info", b'{"plain":1}')
    await raw_producer.send_and_wait(
        "agent.status.info", b'{"own":1}', headers=[(HEADER_NODE, NODE.encode())]
    )
    await raw_producer.send_and_wait(
        "agent.command.ask_question",  # a new topic: found by the pattern, read from its start
        b'{"other":1}',
        headers=[(HEADER_TOPIC, b"agent/command/ask_question"), (HEADER_NODE, b"another-node")],
    )
    await raw_producer.send_and_wait("logs.info", b'{"not matched":1}')
    await until(lambda: len(harness.messages) >= 2, what="two messages")
    await asyncio.sleep(0.5)
    assert sorted(harness.messages) == [
        ("agent/command/ask_question", b'{"other":1}'),
        ("agent/status/info", b'{"plain":1}'),
    ]
    assert link.status()["own_records_skipped"] == 1


async def test_our_own_publications_do_not_come_back(
    link_factory: Callable[..., KafkaLink], raw_producer: AIOKafkaProducer
) -> None:
    await raw_producer.send_and_wait("agent.echo", b"{}")
    harness = Harness()
    link = link_factory(harness)
    await link.connect()
    await subscribed(link, [("agent/#", 1)])
    tokens = [object() for _ in range(20)]
    for token in tokens:
        link.publish(Publication("agent/echo", b'{"mine":1}', 1, False, token))
    await until(lambda: len(harness.settled) == 20)
    await until(lambda: link.status()["own_records_skipped"] == 20, what="own records skipped")
    assert harness.messages == []


async def test_a_restart_mid_stream_replays_nothing_and_skips_nothing(
    link_factory: Callable[..., KafkaLink], raw_producer: AIOKafkaProducer
) -> None:
    await raw_producer.send_and_wait("tools.stream", b"-1", key=b"k")
    first, second = Harness(), Harness()
    link = link_factory(first)
    await link.connect()
    await subscribed(link, [("tools/#", 1)])
    counter = itertools.count()

    async def produce(count: int) -> None:
        futures = [
            await raw_producer.send("tools.stream", b"%d" % next(counter), key=b"k")
            for _ in range(count)
        ]
        await asyncio.gather(*futures)

    await produce(500)
    await until(lambda: len(first.messages) >= 200, what="the first link reading")
    await link.close()  # mid-stream: part of what was produced is not read yet
    await produce(500)
    again = link_factory(second)
    await again.connect()
    await subscribed(again, [("tools/#", 1)])
    await produce(500)
    await until(lambda: len(first.messages) + len(second.messages) >= 1500, what="all 1500")
    await asyncio.sleep(0.5)
    read = [int(payload) for _, payload in first.messages + second.messages]
    assert sorted(read) == list(range(1500)), "each record exactly once across the restart"
    assert read == list(range(1500)), "and in order"
    lag = again.status()["consumer_lag"]
    [used] = [p for p in lag if p["high_watermark"] == 1501]  # one key: one of the partitions
    assert used["topic"] == "tools.stream" and used["committed"] == 1501 and used["lag"] == 0
    assert {p["lag"] for p in lag} <= {0, None}


async def test_unacknowledged_records_are_not_committed_and_show_as_lag(
    link_factory: Callable[..., KafkaLink], raw_producer: AIOKafkaProducer
) -> None:
    await raw_producer.send_and_wait("agent.lag", b"-1", key=b"k")
    harness = Harness(auto_ack=False)
    link = link_factory(harness)
    await link.connect()
    await subscribed(link, [("agent/lag", 1)])
    for n in range(30):
        await raw_producer.send_and_wait("agent.lag", b"%d" % n, key=b"k")
    await until(lambda: len(harness.messages) == 30)
    for ack in harness.unacked[:10]:
        ack()
    await until(lambda: link.status()["consumer_lag"][0]["committed"] == 11, what="commit of 10")
    assert link.status()["consumer_lag"][0]["lag"] == 20
    await link.close()
    again_harness = Harness()
    again = link_factory(again_harness)
    await again.connect()
    await subscribed(again, [("agent/lag", 1)])
    await until(lambda: len(again_harness.messages) == 20, what="the 20 not acknowledged")
    assert [p for _, p in again_harness.messages] == [b"%d" % n for n in range(10, 30)]


async def test_a_killed_cluster_is_noticed_and_a_restarted_one_found_again() -> None:
    mock = restartable().start()
    harness = Harness()
    link = KafkaLink(
        config_for(mock), harness.callbacks(), client_id="argentic-edge-test", node_id=NODE
    )
    try:
        await link.connect()
        token = object()
        link.publish(Publication("agent/a", b"{}", 1, False, token))
        await until(lambda: token in harness.settled)
        mock.kill()
        await until(lambda: bool(harness.lost), what="the link lost")
        assert "answers" in harness.lost[0] or "acknowledge" in harness.lost[0]
        mock.start()
        await link.connect()  # bootstraps again through the same address
        token = object()
        link.publish(Publication("agent/a", b'{"after":1}', 1, False, token))
        await until(lambda: token in harness.settled)
        assert harness.settled[token] is None
        assert [r.value for r in await read_topic(mock.bootstrap, "agent.a", 1)] == [b'{"after":1}']
    finally:
        await link.close()
        mock.stop()


async def test_sasl_and_tls_settings_reach_the_clients(
    cluster: MockKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = Pki.create(tmp_path / "pki")
    harness = Harness()
    config = config_for(
        cluster,
        username="edge",
        password=Secret("s3cret-kafka-password"),
        sasl_mechanism="SCRAM-SHA-512",
        tls_params=TlsParams(
            ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key)
        ),
        request_timeout=3.0,
    )
    link = KafkaLink(config, harness.callbacks(), client_id="edge-sasl", node_id=NODE)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectError, match=r"cannot reach Kafka at kafka://127\.0\.0\.1"):
        await link.connect()  # the mock speaks neither TLS nor SASL
    for name in ("reliable", "fast"):
        client = link.last_client_settings[name].client
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "edge"
        assert client._sasl_plain_password == "s3cret-kafka-password"
        context: ssl.SSLContext = client._ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "argentic-edge test CA"),),)
        ]
    reliable, fast = link.last_client_settings["reliable"], link.last_client_settings["fast"]
    assert reliable._sender._acks == -1 and reliable._txn_manager is not None  # all, idempotent
    assert fast._sender._acks == 1 and fast._txn_manager is None
    assert reliable._message_accumulator._linger_time == 0.005
    assert reliable.client._client_id == "edge-sasl"
    assert "s3cret-kafka-password" not in caplog.text
    assert "s3cret-kafka-password" not in repr(config)
