"""Discovery between namespaces: what agents find, goodbyes, and a hostile neighbour.

node-a (n1) runs with a slow liveness check (3 s) and room for 8 peers only, so a goodbye is
told apart from a liveness timeout and a flood runs into the table's bound.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.appliance import rss_kib
from tests.support.brokers import free_port
from tests.support.netns import Lan, Lines, Namespace, Node, netns_unavailable, node_config

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]

MAX_PEERS = 8
FIND_EDGE = """
import json, zmq
from argentic_edge.client.bus import Subscriber, publish
from argentic_edge.client.discover import find_edge
from argentic_edge.topics import TopicFilter
edge = find_edge(timeout=5)
context = zmq.Context()
sub = Subscriber(context, edge.subscribe, TopicFilter("agent/status/#"))
publish(context, edge.publish, "agent/status/info", b'{"type": "INFO"}', wait=3)
got = [m.payload.decode() for m in sub.messages(timeout=3)][:1]
sub.close()
context.term()
print(json.dumps({"name": edge.name, "id": edge.node_id, "config": edge.messaging_config(),
                  "publish": edge.publish, "subscribe": edge.subscribe, "got": got}))
"""


@dataclass
class Site:
    lan: Lan
    tmp: Path
    a: Node
    ns: list[Namespace]
    pub: int
    sub: int
    export: int

    def node(self, key: str, ns: Namespace, node_name: str, **discovery: object) -> Node:
        config = node_config(
            self.tmp,
            key,
            node_name,
            self.pub,
            self.sub,
            {
                "liveness_interval": 3,
                "max_peers": MAX_PEERS,
                "federation": {"export_port": self.export},
                **discovery,
            },
        )
        return Node(ns, config, self.tmp / key, self.tmp / f"{key}.log")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    lan = Lan().create()
    try:
        namespaces = [lan.add() for _ in range(4)]
        site = Site(
            lan,
            tmp_path_factory.mktemp("discovery"),
            None,
            namespaces,  # type: ignore
            free_port(),
            free_port(),
            free_port(),
        )
        site.a = site.node("a", namespaces[0], "node-a").start()
        yield site
        site.a.stop()
    finally:
        lan.close()


def test_find_edge_gives_an_agent_a_working_messaging_config(site: Site) -> None:
    client = site.ns[2]
    result = client.run(client.python("-c", FIND_EDGE), timeout=30)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    address = site.ns[0].address
    assert (found["name"], found["id"]) == ("node-a", site.a.ready["node_id"])
    assert found["config"] == {
        "protocol": "zeromq",
        "broker_address": address,
        "port": site.pub,
        "backend_port": site.sub,
        "start_proxy": False,
        "proxy_mode": "external",
    }
    assert found["publish"] == f"tcp://{address}:{site.pub}"
    assert found["got"] == ['{"type": "INFO"}']  # the endpoints it found carry traffic


def test_a_clean_shutdown_says_goodbye_and_is_seen_at_once(site: Site) -> None:
    b = site.node("b", site.ns[1], "node-b").start()
    site.a.wait_peer("node-b", "discovered", 20)
    asked = time.monotonic()
    b.stop()
    site.a.wait_peer("node-b", "lost", 8)
    assert time.monotonic() - asked < 3.0  # a liveness timeout needs 3 silent intervals of 3 s


def test_junk_and_a_flood_of_fake_appliances_are_ignored_counted_and_bounded(site: Site) -> None:
    assert site.a.process is not None
    before = rss_kib(site.a.process.pid)
    flood_ns = site.ns[3]
    flooder = flood_ns.popen(
        flood_ns.python("-m", "tests.support.netns_flood", flood_ns.address, "--valid", "100"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        made = json.loads(Lines(flooder.stdout).next(30))  # type: ignore[arg-type]
        assert made["valid"] == 100

        deadline = time.monotonic() + 20
        while True:  # counters have no event to await: poll the status, bounded
            peers = site.a.status()["peers"]
            counters = peers["counters"]
            if (
                counters.get("malformed", 0) >= made["malformed"]
                and counters.get("bad_port", 0) >= made["bad_port"]
                and counters.get("unsupported_version", 0) >= 1
                and counters["table_full"] >= 100 - MAX_PEERS
            ):
                break
            assert time.monotonic() < deadline, counters
            time.sleep(0.2)
        assert len(peers["peers"]) <= MAX_PEERS
        assert {p["state"] for p in peers["peers"]} <= {"discovered", "lost"}  # nobody trusted
        assert peers["federation"] is True
        assert rss_kib(site.a.process.pid) - before < 16 * 1024

        listing = site.ns[2].run(
            site.ns[2].python("-m", "argentic_edge", "peers", "--json", "--timeout", "3"),
            timeout=30,
        )
        assert listing.returncode == 0, listing.stderr
        seen = json.loads(listing.stdout)
        names = {peer["name"] for peer in seen["peers"]}
        assert "node-a" in names and {f"valid-{i}" for i in range(100)} <= names
        assert not any(name.startswith(("malformed", "bad_port", "unsupported")) for name in names)
        for reason in ("malformed", "bad_port", "unsupported_version"):
            assert seen["counters"].get(reason, 0) >= made[reason], seen["counters"]

        table = site.ns[2].run(
            site.ns[2].python("-m", "argentic_edge", "peers", "--timeout", "2"), timeout=30
        )
        assert table.stdout.startswith("NAME") and "node-a" in table.stdout
        assert "ignored records: " in table.stdout
    finally:
        flooder.stdin.close()  # type: ignore[union-attr]
        flooder.wait(timeout=15)


def test_open_trust_links_peers_without_approval_but_not_those_that_refuse(site: Site) -> None:
    open_b = site.node(
        "open-b", site.ns[1], "open-b", federation={"trust": "open", "export_port": site.export}
    ).start()
    open_c = site.node(
        "open-c", site.ns[2], "open-c", federation={"trust": "open", "export_port": site.export}
    ).start()
    try:
        open_b.wait_peer("open-c", "linked", 20)
        open_c.wait_peer("open-b", "linked", 20)
        open_b.wait_peer("node-a", "trusted", 20)  # node-a (approved mode) refuses them
        site.a.wait_peer("open-b", "discovered", 5)  # and node-a does not trust them
    finally:
        open_b.stop()
        open_c.stop()
