"""The bus: Argentic's ZeroMQ driver talks through it unchanged, and libzmq counts for us."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from argentic_edge.app import Edge
from argentic_edge.bus.proxy import Bus, BusError, ProxyThread
from argentic_edge.config import BusConfig, parse_config
from tests.support.config import bus_section, config_document


def argentic_message(kind: str, **fields: object) -> str:
    """A message as Argentic's BaseMessage.model_dump_json() writes it."""
    return json.dumps(
        {
            "type": kind,
            "source": "test-agent",
            "timestamp": time.time(),
            "message_id": str(uuid.uuid4()),
            **fields,
        }
    )


def bus_config(**overrides: object) -> BusConfig:
    return parse_config({"messaging": bus_section(**overrides)}, env={}).messaging


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async with Edge(parse_config(config_document(tmp_path / "data"), env={})) as running:
        yield running


async def wait_for_subscription(
    pub: zmq.asyncio.Socket, sub: zmq.asyncio.Socket, topic: str
) -> None:
    """Publish probes until the subscriber sees one: the subscription has reached the proxy."""
    for _ in range(200):
        await pub.send_string(f"{topic} probe")
        if await sub.poll(20):
            await sub.recv()
            while await sub.poll(50):
                await sub.recv()
            return
    raise TimeoutError("subscription never propagated")


async def test_argentic_zeromq_driver_round_trip(edge: Edge) -> None:
    """Exactly what Argentic's ZeroMQDriver does (proxy_mode external, start_proxy false):
    PUB connects to `port`, SUB to `backend_port`, one frame '<topic> <json>', prefix subscribe."""
    bus = edge.config.messaging
    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, bus.high_water_mark)
    pub.setsockopt(zmq.LINGER, bus.linger)
    pub.connect(f"tcp://127.0.0.1:{bus.port}")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, bus.high_water_mark)
    sub.connect(f"tcp://127.0.0.1:{bus.backend_port}")
    sub.setsockopt(zmq.SUBSCRIBE, "agent/command".encode(bus.topic_encoding))
    try:
        await wait_for_subscription(pub, sub, "agent/command/probe")
        sent = argentic_message("ask_question", question="what is a proxy?", user_id="u1")
        await pub.send_string(f"agent/command/ask_question {sent}")
        await pub.send_string(f"agent/response/answer {argentic_message('answer')}")
        await pub.send_string(f"agent/commandeer {argentic_message('prefix-match')}")
        received = [await sub.recv_string() for _ in range(2)]
        topic, json_data = received[0].split(" ", 1)
        assert topic == "agent/command/ask_question" and json_data == sent
        assert json.loads(json_data)["question"] == "what is a proxy?"
        assert received[1].startswith("agent/commandeer "), "subscriptions are byte prefixes"
        assert not await sub.poll(100), "agent/response/answer was not subscribed"
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()

    stats = edge.status()["bus"]["counters"]
    assert stats["frontend"]["messages_in"] >= 3
    assert stats["backend"]["messages_out"] >= 3


def inproc_proxy(ctx: zmq.Context, name: str) -> ProxyThread:
    """A started proxy on ``inproc://<name>-f`` (publishers) and ``inproc://<name>-b``."""
    frontend, backend = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    frontend.bind(f"inproc://{name}-f")
    backend.bind(f"inproc://{name}-b")
    proxy = ProxyThread(ctx, frontend, backend, name)
    proxy.start()
    return proxy


def test_counters_come_from_libzmq() -> None:
    ctx = zmq.Context()
    proxy = inproc_proxy(ctx, "t")
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.connect("inproc://t-f")
    sub.connect("inproc://t-b")
    sub.subscribe(b"t")
    while True:
        pub.send(b"t warmup")
        if sub.poll(10):
            sub.recv()
            break
    before = proxy.statistics()
    for _ in range(100):
        pub.send(b"t " + b"x" * 62)
    for _ in range(100):
        sub.recv()
    after = proxy.statistics()
    assert after.frontend.messages_in - before.frontend.messages_in == 100
    assert after.frontend.bytes_in - before.frontend.bytes_in == 6400
    assert after.backend.messages_out - before.backend.messages_out == 100

    # A reconfigure restarts the loop on the same sockets and keeps counting.
    proxy.reconfigure(lambda f, b: None)
    pub.send(b"t again")
    assert sub.recv() == b"t again"
    assert proxy.statistics().frontend.messages_in == after.frontend.messages_in + 1
    proxy.stop()
    for sock in (pub, sub):
        sock.close(0)
    ctx.term()


def test_counters_read_while_another_thread_reconfigures(caplog: pytest.LogCaptureFixture) -> None:
    """The status (event loop) reads counters while the federation reconfigures the proxy from
    another thread: never a request to a loop that is just terminating (which went unanswered
    for 2 s and crashed the status), and the counts never go back."""
    ctx = zmq.Context()
    proxy = inproc_proxy(ctx, "race")
    pub = ctx.socket(zmq.PUB)
    pub.connect("inproc://race-f")
    done = threading.Event()

    def reconfigure() -> None:
        for _ in range(150):
            proxy.reconfigure(lambda f, b: None)
        done.set()

    worker = threading.Thread(target=reconfigure)
    seen = 0
    with caplog.at_level("WARNING", logger="argentic_edge.bus.proxy"):
        worker.start()
        while not done.is_set():
            pub.send(b"t x")
            count = proxy.statistics().frontend.messages_in
            assert count >= seen
            seen = count
        worker.join()
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    proxy.stop()
    pub.close(0)
    ctx.term()


async def test_a_taken_port_is_a_clear_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    config = bus_config(port=holder.getsockname()[1])
    bus = Bus(config)
    try:
        with pytest.raises(BusError, match=rf"messaging.port.*:{config.port} is already in use"):
            await bus.start()
    finally:
        holder.close()
        await bus.stop()


async def test_an_existing_proxy_on_the_ports_is_reused() -> None:
    config = bus_config(connect_timeout=2000)
    first = Bus(config)
    await first.start()
    second = Bus(config)
    try:
        await second.start()
        assert (first.mode, second.mode) == ("embedded", "reused")
        assert second.stats() is None
    finally:
        await second.stop()
        await first.stop()


async def test_external_mode_connects_to_a_running_proxy_or_starts_one() -> None:
    external = bus_config(proxy_mode="external", start_proxy=True, connect_timeout=500)
    starter = Bus(external)
    await starter.start()
    assert starter.mode == "embedded", "no proxy answered, so one was started"
    user = Bus(external)
    await user.start()
    assert user.mode == "reused"
    only_connect = Bus(BusConfig(**{**vars(external), "start_proxy": False}))
    await only_connect.start()
    assert only_connect.mode == "external"
    for bus in (only_connect, user, starter):
        await bus.stop()


async def test_stop_frees_ports_and_threads_at_once() -> None:
    config = bus_config()
    bus = Bus(config)
    await bus.start()
    assert [t.name for t in threading.enumerate() if t.name.startswith("zmq-proxy")] == [
        "zmq-proxy-bus"
    ]
    started = time.monotonic()
    await bus.stop()
    assert time.monotonic() - started < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("zmq-proxy")]
    for port in (config.port, config.backend_port):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
