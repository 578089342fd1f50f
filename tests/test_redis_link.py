"""RedisLink against a real redis-server, driven through the Link interface (callbacks harness).

Pub/sub is checked against what redis-py sees on the wire (Argentic's: channel = topic, payload
unchanged); streams against XRANGE/XPENDING of the server itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from argentic_edge.bridge.link import ConnectError
from argentic_edge.bridge.redis import RedisLink, redis_subscriptions
from argentic_edge.config import RedisConfig, Secret, TlsParams
from argentic_edge.topics import parse_filter
from tests.support.links import Recorder, publication
from tests.support.pki import Pki
from tests.support.redis import RedisServer


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=redis_server.port)
    yield client
    await client.aclose()


def make_link(server: RedisServer, recorder: Recorder, **keys: object) -> RedisLink:
    config = RedisConfig(broker_address="127.0.0.1", port=server.port, **keys)  # type: ignore[arg-type]
    return RedisLink(
        config, recorder.callbacks(), client_id="edge-test", node_id="node1", consumer="node1-r"
    )


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ("agent/x/status", [("agent/x/status", False)]),
        ("agent/+/status", [("agent/*/status", True)]),
        ("agent/#", [("agent", False), ("agent/*", True)]),
        ("#", [("*", True)]),
        ("a*b/[c]?/+/#", [("a\\*b/\\[c\\]\\?/*", True), ("a\\*b/\\[c\\]\\?/*/*", True)]),
        ("back\\slash", [("back\\\\slash", False)]),
    ],
)
def test_mqtt_filters_become_exact_redis_subscriptions(
    mqtt: str, expected: list[tuple[str, bool]]
) -> None:
    globs = redis_subscriptions(parse_filter(mqtt))
    assert [(glob.name, glob.pattern) for glob in globs] == expected


async def test_pubsub_publishes_are_argentic_wire_and_pipelined(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder)
    session = await link.connect()
    assert session.description.startswith("Redis ")
    listener = raw.pubsub()
    await listener.psubscribe("agent/*")
    await listener.get_message(timeout=1)  # the psubscribe confirmation
    for number in range(2000):
        link.publish(publication(f"agent/a{number % 3}/status", number))
    await recorder.wait(lambda: len(recorder.settled) == 2000)
    assert set(recorder.settled.values()) == {None}
    received = []
    while len(received) < 2000:
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None, f"only {len(received)} of 2000 arrived"
        received.append(message)
    assert received[7]["channel"] == b"agent/a1/status"
    assert json.loads(received[7]["data"]) == {"n": 7, "type": "test"}
    assert [json.loads(m["data"])["n"] for m in received] == list(range(2000))
    assert link.status()["batches"] < 100  # a burst goes out in pipelines, not one by one
    await listener.aclose()
    await link.close()


async def test_pubsub_receives_what_the_filters_match_once(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder)
    await link.connect()
    await link.subscribe([("agent/#", 1), ("agent/+/status", 1), ("tools/+/x", 0)])
    await asyncio.sleep(0.2)
    body = b'{"ok": true}'
    for channel in [
        "agent",  # agent/# matches its parent level
        "agent/a/status",  # two of our subscriptions match: passed on once
        "tools/t/x",
        "tools/t/y/x",  # the glob tools/*/x matches it, the MQTT filter does not
        "toolsx",
        "agentx/a",
    ]:
        await raw.publish(channel, body)
    await raw.publish("tools/last/x", body)
    await recorder.wait(lambda: "tools/last/x" in recorder.topics())
    assert recorder.topics() == ["agent", "agent/a/status", "tools/t/x", "tools/last/x"]
    assert recorder.messages[0][1] == body
    await link.close()


async def test_bad_input_from_redis_is_dropped_counted_and_logged_once(
    redis_server: RedisServer, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder)
    await link.connect()
    await link.subscribe([("#", 0)])
    await asyncio.sleep(0.2)
    caplog.set_level(logging.WARNING, "argentic_edge.bridge.inbound")
    for _ in range(3):
        await raw.publish("agent/a", b"not json {")
        await raw.publish(b"agent/\xff", b"{}")
        await raw.publish("agent/+", b"{}")
    await raw.publish("agent/with space", b"{}")  # the service drops it: space_in_topic
    await raw.publish("agent/good", b"{}")
    await recorder.wait(lambda: "agent/good" in recorder.topics())
    assert recorder.topics() == ["agent/with space", "agent/good"]
    assert link.status()["dropped_inbound"] == {
        "not_json": 3,
        "invalid_utf8": 3,
        "wildcard_in_topic": 3,
    }
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 3, [r.getMessage() for r in drops]
    await link.close()


async def test_credentials_are_checked_and_refusal_is_explained(tmp_path: Path) -> None:
    server = RedisServer(
        tmp_path / "acl", extra_args=["--user", "edge", "on", ">s3cret", "~*", "&*", "+@all"]
    ).start()
    try:
        good = make_link(server, Recorder(), username="edge", password=Secret("s3cret"))
        await good.connect()
        await good.close()
        bad = make_link(server, Recorder(), username="edge", password=Secret("wrong"))
        with pytest.raises(ConnectError, match="refused the credentials"):
            await bad.connect()
    finally:
        server.stop()


async def test_tls_with_the_seeds_tls_params(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    server = RedisServer(tmp_path / "tls", tls=(pki.ca, pki.server_cert, pki.server_key)).start()
    try:
        recorder = Recorder()
        trusted = RedisLink(
            RedisConfig(
                broker_address="localhost",
                port=server.port,
                tls_params=TlsParams(ca_certs=str(pki.ca)),
            ),
            recorder.callbacks(),
            client_id="edge",
            node_id="n1",
            consumer="n1-r",
        )
        assert trusted.where.startswith("rediss://")
        await trusted.connect()
        trusted.publish(publication("agent/tls", 1))
        await recorder.wait(lambda: recorder.settled == {1: None})
        await trusted.close()
        untrusted = RedisLink(
            RedisConfig(
                broker_address="localhost",
                port=server.port,
                tls_params=TlsParams(ca_certs=str(pki.other_ca)),
            ),
            Recorder().callbacks(),
            client_id="edge",
            node_id="n1",
            consumer="n1-r",
        )
        with pytest.raises(ConnectError, match=r"certificate of .* is not trusted"):
            await untrusted.connect()
    finally:
        server.stop()


async def test_a_server_that_is_not_there_is_a_connect_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "gone")  # never started: nothing listens on its port
    link = make_link(server, Recorder())
    with pytest.raises(ConnectError, match="refused the connection"):
        await link.connect()


async def test_a_killed_server_is_reported_lost(redis_server: RedisServer) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder)
    await link.connect()
    await link.subscribe([("agent/#", 0)])
    redis_server.kill()
    await recorder.wait(lambda: recorder.lost, timeout=10)
    assert len(recorder.lost) == 1
    redis_server.start()
    await link.connect()  # the service reconnects the same link and subscribes again
    await link.subscribe([("agent/#", 0)])
    await link.subscribe([("agent/#", 0)])  # twice: still one reader
    await asyncio.sleep(0.2)
    raw = aioredis.Redis(port=redis_server.port)
    await raw.publish("agent/once", b"{}")
    await raw.publish("agent/last", b"{}")
    await recorder.wait(lambda: "agent/last" in recorder.topics())
    assert recorder.topics() == ["agent/once", "agent/last"]
    await raw.aclose()
    await link.close()


# --- streams ---------------------------------------------------------------------------------


async def test_streams_publish_with_bounded_xadd_per_topic(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder, mode="streams", stream_maxlen=100)
    await link.connect()
    for number in range(1000):
        link.publish(publication("agent/a/status", number))
    await recorder.wait(lambda: len(recorder.settled) == 1000)
    entries = await raw.xrevrange("agent/a/status", count=1)
    assert json.loads(entries[0][1][b"payload"])["n"] == 999
    assert 100 <= await raw.xlen("agent/a/status") < 1000  # MAXLEN ~: trimmed, roughly
    await link.close()


async def test_streams_read_with_a_group_and_xack_only_when_acked(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    recorder = Recorder(auto_ack=False)
    link = make_link(redis_server, recorder, mode="streams")
    await link.connect()
    await link.subscribe([("agent/+/status", 1)])
    for number in range(10):
        await raw.xadd("agent/a/status", {"payload": json.dumps({"n": number})})
    await recorder.wait(lambda: len(recorder.messages) == 10)
    pending = await raw.xpending("agent/a/status", "argentic-edge-node1")
    assert pending["pending"] == 10  # handed over, not yet on the bus
    for ack in recorder.unacked[:4]:
        ack()
    await asyncio.sleep(0.3)
    assert (await raw.xpending("agent/a/status", "argentic-edge-node1"))["pending"] == 6
    await link.close()

    # An appliance restart: same consumer name, the six unacknowledged come again, then new.
    again = Recorder()
    restarted = make_link(redis_server, again, mode="streams")
    await restarted.connect()
    await restarted.subscribe([("agent/+/status", 1)])
    await raw.xadd("agent/a/status", {"payload": json.dumps({"n": 10})})
    await again.wait(lambda: len(again.messages) == 7)
    assert [json.loads(p)["n"] for _, p in again.messages] == [4, 5, 6, 7, 8, 9, 10]
    await again.wait(lambda: True)
    await asyncio.sleep(0.3)
    assert (await raw.xpending("agent/a/status", "argentic-edge-node1"))["pending"] == 0
    await restarted.close()


async def test_streams_wildcards_find_new_streams_and_one_stream_carries_topics(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    recorder = Recorder()
    link = make_link(redis_server, recorder, mode="streams", stream="argentic")
    await link.connect()
    await link.subscribe([("agent/#", 1)])
    await raw.xadd("argentic", {"topic": "agent/b/x", "payload": b"{}"})
    await raw.xadd("argentic", {"topic": "tools/other", "payload": b"{}"})  # not our route
    await raw.xadd("argentic", {"payload": b"{}"})  # no topic field
    await raw.xadd("argentic", {"topic": "agent/c", "payload": b"{}"})
    await recorder.wait(lambda: len(recorder.messages) == 2)
    assert recorder.topics() == ["agent/b/x", "agent/c"]
    assert link.status()["dropped_inbound"] == {"malformed_entry": 1}
    link.publish(publication("agent/out", 1))
    await recorder.wait(lambda: len(recorder.settled) == 1)
    last = await raw.xrevrange("argentic", count=1)
    assert last[0][1][b"topic"] == b"agent/out"
    await link.close()
