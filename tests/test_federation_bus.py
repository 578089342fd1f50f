"""The FederatedBus on loopback: real libzmq proxies, real CURVE, real ZAP; no mDNS.

Each bus gets its own zmq.Context, as each appliance process has one (ZAP is per context).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from argentic_edge.app import Edge, federation_wanted
from argentic_edge.bus.federated import FederatedBus, LinkTarget
from argentic_edge.bus.proxy import Bus, BusError
from argentic_edge.config import BusConfig, FederationConfig, parse_config
from argentic_edge.federation.identity import load_or_create_keys
from argentic_edge.federation.trust import DENY_ALL, KeyPolicy
from tests.support.brokers import free_port


@pytest.fixture
async def make_bus(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[tuple[FederatedBus, zmq.Context]] = []

    async def make(name: str, export_port: int | None = None, **bus_options: int) -> FederatedBus:
        context = zmq.Context()
        config = BusConfig(
            broker_address="127.0.0.1", port=free_port(), backend_port=free_port(), **bus_options
        )
        bus = FederatedBus(
            config,
            FederationConfig(export_port=export_port or free_port()),
            load_or_create_keys(tmp_path / name),
            DENY_ALL,
            context,
        )
        started.append((bus, context))
        await bus.start()
        return bus

    yield make
    for bus, context in started:
        await bus.stop()
        context.term()


def target(bus: FederatedBus) -> LinkTarget:
    assert bus.keys is not None
    return LinkTarget(f"tcp://127.0.0.1:{bus.federation.export_port}", bus.keys.public)


def ident(bus: FederatedBus) -> str:
    assert bus.keys is not None
    return bus.keys.node_id


async def link(pairs: list[tuple[FederatedBus, list[FederatedBus]]]) -> None:
    """Each bus trusts and links the listed others; returns once every link is up."""
    pending: dict[tuple[str, str], asyncio.Event] = {}

    def listener(me: str) -> Callable[[str, str], None]:
        def up(peer: str, state: str) -> None:
            if state == "up":
                pending[(me, peer)].set()

        return up

    for bus, others in pairs:
        bus.policy = KeyPolicy(ids=frozenset(ident(o) for o in others))
        for other in others:
            pending[(ident(bus), ident(other))] = asyncio.Event()
        bus.add_link_listener(listener(ident(bus)))
    for bus, others in pairs:
        await bus.set_links({ident(o): target(o) for o in others})
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in pending.values())), 10)


class Agent:
    """A publisher and a subscriber on one bus, as agents on that node would have."""

    def __init__(self, context: zmq.Context, bus: FederatedBus, origin: str) -> None:
        self.origin = origin
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"data/")
        self.sub.setsockopt(zmq.SUBSCRIBE, b"warm/")
        self.sub.connect(bus.endpoints.subscribe)
        self.pub = context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        self.pub.connect(bus.endpoints.publish)
        self.warm: set[str] = set()
        self.counts: Counter[str] = Counter()

    def drain(self, wait_ms: int = 0) -> None:
        while self.sub.poll(wait_ms):
            topic = self.sub.recv().split(b" ", 1)[0].decode()
            kind, rest = topic.split("/", 1)
            if kind == "warm":
                self.warm.add(rest)
            else:
                self.counts[rest] += 1


def warm_up(agents: list[Agent], reach: dict[str, set[str]], timeout: float = 10.0) -> None:
    """Publish warm messages until every agent has heard every origin it should hear.

    Subscriptions travel in order (data/ before warm/), so hearing X's warm message proves
    X's data messages will reach us too.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for agent in agents:
            agent.pub.send(f"warm/{agent.origin} {{}}".encode())
        for agent in agents:
            agent.drain(20)
        if all(reach[a.origin] <= a.warm for a in agents):
            return
    raise AssertionError({a.origin: sorted(a.warm) for a in agents})


def send_data(agents: list[Agent], count: int) -> None:
    for agent in agents:
        for i in range(count):
            agent.pub.send(f"data/{agent.origin}/{i} {{}}".encode())


def collect(
    agents: list[Agent], expected: dict[str, int], quiet_ms: int = 300, timeout: float = 10.0
) -> None:
    """Receive until each agent has its expected total, then a quiet spell for duplicates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        sum(a.counts.values()) < expected[a.origin] for a in agents
    ):
        for agent in agents:
            agent.drain(10)
    for agent in agents:
        agent.drain(quiet_ms)


async def test_a_full_mesh_of_three_delivers_every_message_exactly_once(make_bus) -> None:
    a, b, c = [await make_bus(n) for n in "abc"]
    await link([(a, [b, c]), (b, [a, c]), (c, [a, b])])
    context = zmq.Context()
    agents = [Agent(context, bus, name) for bus, name in ((a, "A"), (b, "B"), (c, "C"))]
    try:
        warm_up(agents, {name: {"A", "B", "C"} for name in "ABC"})
        send_data(agents, 200)
        collect(agents, {name: 600 for name in "ABC"})
        for agent in agents:
            assert sum(agent.counts.values()) == 600, agent.origin
            assert set(agent.counts.values()) == {1}, agent.origin
    finally:
        for agent in agents:
            agent.sub.close()
            agent.pub.close()
        context.term()
    status = asdict(b.federation_status())
    assert {link["state"] for link in status["links"].values()} == {"up"}
    assert status["from_peers"] >= 400 and status["to_peers"] >= 200
    assert status["zap"]["allowed"] == 2 and status["zap"]["denied"] == 0


async def test_traffic_from_a_peer_is_never_passed_on_to_another_peer(make_bus) -> None:
    a, b, c = [await make_bus(n) for n in "abc"]
    await link([(a, [b]), (b, [a, c]), (c, [b])])  # a chain: A - B - C, no A - C link
    context = zmq.Context()
    agents = [Agent(context, bus, name) for bus, name in ((a, "A"), (b, "B"), (c, "C"))]
    try:
        warm_up(agents, {"A": {"A", "B"}, "B": {"A", "B", "C"}, "C": {"B", "C"}})
        send_data(agents, 100)
        collect(agents, {"A": 200, "B": 300, "C": 200})
        assert {k.split("/")[0] for k in agents[0].counts} == {"A", "B"}
        assert {k.split("/")[0] for k in agents[2].counts} == {"B", "C"}
        assert sum(agents[1].counts.values()) == 300
        for agent in agents:
            assert set(agent.counts.values()) == {1}
    finally:
        for agent in agents:
            agent.sub.close()
            agent.pub.close()
        context.term()


async def test_unlinking_a_peer_stops_its_traffic(make_bus) -> None:
    a, b = await make_bus("a"), await make_bus("b")
    await link([(a, [b]), (b, [a])])
    context = zmq.Context()
    agents = [Agent(context, a, "A"), Agent(context, b, "B")]
    try:
        warm_up(agents, {"A": {"A", "B"}, "B": {"A", "B"}})
        await a.set_links({})
        assert a.links == {}
        agents[1].pub.send(b"data/B/0 {}")
        agents[0].pub.send(b"data/A/0 {}")
        collect(agents, {"A": 1, "B": 2}, timeout=2)
        assert agents[0].counts == Counter({"A/0": 1})  # B's message no longer reaches A
        assert agents[1].counts == Counter({"A/0": 1, "B/0": 1})  # A still exports to B
    finally:
        for agent in agents:
            agent.sub.close()
            agent.pub.close()
        context.term()


async def test_a_peer_cannot_send_a_message_above_max_message_size(make_bus) -> None:
    """The link to a peer faces the network: B refuses a frame above its own limit even from a
    trusted peer whose limit is larger. libzmq ends such a connection for good (a protocol
    error is not retried), so the link carries traffic again once it is made anew."""
    limit = BusConfig().max_message_size
    a = await make_bus("a", max_message_size=4 * limit)
    b = await make_bus("b")
    await link([(a, [b]), (b, [a])])
    context = zmq.Context()
    agents = [Agent(context, a, "A"), Agent(context, b, "B")]
    try:
        warm_up(agents, {"A": {"A", "B"}, "B": {"A", "B"}})
        agents[0].pub.send(b"data/A/big " + b"x" * (2 * limit))
        collect(agents[:1], {"A": 1})
        assert agents[0].counts == Counter({"A/big": 1})  # A's own limit lets it through
        await b.set_links({})
        await b.set_links({ident(a): target(a)})
        agents[1].warm.clear()
        warm_up(agents, {"A": {"A", "B"}, "B": {"A", "B"}})
        agents[0].pub.send(b"data/A/after {}")
        collect(agents[1:], {"B": 1})
        assert agents[1].counts == Counter({"A/after": 1})  # never the big frame
    finally:
        for agent in agents:
            agent.sub.close()
            agent.pub.close()
        context.term()


def curve_client(context: zmq.Context, bus: FederatedBus) -> tuple[zmq.Socket, zmq.Socket, str]:
    """A SUB with a fresh key pair, connecting to the bus's export port; and its monitor."""
    assert bus.keys is not None
    public, secret = zmq.curve_keypair()
    client = context.socket(zmq.SUB)
    client.setsockopt(zmq.LINGER, 0)
    client.curve_serverkey = bus.keys.public.encode()
    client.curve_publickey, client.curve_secretkey = public, secret
    client.setsockopt(zmq.SUBSCRIBE, b"")
    monitor = client.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    client.connect(f"tcp://127.0.0.1:{bus.federation.export_port}")
    return client, monitor, public.decode()


def handshake(monitor: zmq.Socket) -> int:
    assert monitor.poll(5000), "no handshake outcome within 5 s"
    return int(recv_monitor_message(monitor)["event"])


async def test_zap_refuses_an_unknown_key_and_admits_it_once_trusted(make_bus) -> None:
    a = await make_bus("a")
    assert a.policy == DENY_ALL
    context = zmq.Context()
    client, monitor, public = curve_client(context, a)
    try:
        assert handshake(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert a.federation_status().zap.denied == 1
        a.policy = KeyPolicy(keys=frozenset({public}))  # approved at runtime
        endpoint = f"tcp://127.0.0.1:{a.federation.export_port}"
        client.disconnect(endpoint)  # libzmq does not retry a refusal
        client.connect(endpoint)
        assert handshake(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        publisher = context.socket(zmq.PUB)
        publisher.connect(a.endpoints.publish)
        try:
            deadline = time.monotonic() + 5
            while not client.poll(20) and time.monotonic() < deadline:
                publisher.send(b"agent/log {}")
            assert client.recv().startswith(b"agent/log ")
        finally:
            publisher.close(linger=0)
    finally:
        client.close()
        monitor.close()
        context.term()


async def test_a_refused_link_is_retried_and_comes_up_after_approval(make_bus) -> None:
    a, b = await make_bus("a"), await make_bus("b")
    states: asyncio.Queue[str] = asyncio.Queue()
    a.add_link_listener(lambda peer, state: states.put_nowait(state))
    await a.set_links({ident(b): target(b)})  # B does not trust A yet
    assert await asyncio.wait_for(states.get(), 5) == "refused"
    assert a.link_state(ident(b)) == "refused"
    b.policy = KeyPolicy(ids=frozenset({ident(a)}))
    await a.retry([ident(b)])
    seen = [await asyncio.wait_for(states.get(), 5)]
    while seen[-1] != "up":
        seen.append(await asyncio.wait_for(states.get(), 5))
    assert a.link_state(ident(b)) == "up"


async def test_a_taken_export_port_is_named_and_nothing_is_left_running(make_bus) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BusError, match=re.escape("discovery.federation.export_port")):
            await make_bus("a", export_port=port)
    again = await make_bus("b", export_port=port)  # the port and ZAP were released
    assert again.mode == "federated"


async def test_the_export_port_closes_with_the_bus(make_bus) -> None:
    a = await make_bus("a")
    port = a.federation.export_port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    await a.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_federation_needs_discovery_and_our_own_embedded_proxy() -> None:
    assert federation_wanted(parse_config({}))
    assert not federation_wanted(parse_config({"discovery": {"enabled": False}}))
    assert not federation_wanted(parse_config({"discovery": {"federation": {"enabled": False}}}))
    assert not federation_wanted(parse_config({"messaging": {"proxy_mode": "external"}}))
    assert not federation_wanted(parse_config({"messaging": {"start_proxy": False}}))


async def test_without_federation_the_edge_runs_the_plain_single_proxy_bus(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "messaging": {
                "broker_address": "127.0.0.1",
                "port": free_port(),
                "backend_port": free_port(),
            },
            "discovery": {"enabled": False},
        }
    )
    async with Edge(config) as edge:
        bus = edge.services["bus"].bus  # type: ignore[attr-defined]
        assert type(bus) is Bus and bus.mode == "embedded"
        status = edge.status()
        assert "federation" not in status["bus"]
        assert status["peers"] == {"enabled": False}
    assert not (tmp_path / "federation").exists()


async def until(states: asyncio.Queue[str], wanted: str, timeout: float = 5.0) -> None:
    while (state := await asyncio.wait_for(states.get(), timeout)) != wanted:
        assert state in ("connecting", "up", "refused"), state


async def test_revoking_drops_a_forgotten_peer_while_trusted_peers_come_back(make_bus) -> None:
    a, b, c = [await make_bus(n) for n in "abc"]
    await link([(a, [b, c]), (b, [a]), (c, [a])])
    from_b: asyncio.Queue[str] = asyncio.Queue()
    from_c: asyncio.Queue[str] = asyncio.Queue()
    b.add_link_listener(lambda peer, state: from_b.put_nowait(state))
    c.add_link_listener(lambda peer, state: from_c.put_nowait(state))
    a.policy = KeyPolicy(ids=frozenset({ident(c)}))  # A forgets B
    await a.revoke()
    await until(from_b, "refused")
    await until(from_c, "connecting")
    await until(from_c, "up")
    assert b.link_state(ident(a)) == "refused" and c.link_state(ident(a)) == "up"


async def test_revoking_again_and_again_always_gets_the_export_port_back(make_bus) -> None:
    a = await make_bus("a")
    for _ in range(50):  # the old listener closes asynchronously; rebinding must wait for it
        socket.create_connection(("127.0.0.1", a.federation.export_port), timeout=2).close()
        await a.revoke()
    socket.create_connection(("127.0.0.1", a.federation.export_port), timeout=2).close()
