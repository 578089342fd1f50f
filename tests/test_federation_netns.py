"""Federation between real appliances in network namespaces, over real multicast and TCP.

One LAN for the module: node-a (n1), node-b (n2, run exactly as a user does:
``python -m argentic_edge run``), a third appliance (n3) and a late-comer (n4). a, b and the third
trust each other by configuration; n4 is approved at runtime.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from argentic_edge.federation.identity import load_or_create_keys
from argentic_edge.federation.trust import TRUST_FILE
from tests.support.brokers import free_port
from tests.support.netns import Lan, Lines, Namespace, Node, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]

LIVENESS = 1.0


@dataclass
class Site:
    lan: Lan
    tmp: Path
    ns: dict[str, Namespace] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    runs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pub: int = field(default_factory=free_port)
    sub: int = field(default_factory=free_port)
    export: int = field(default_factory=free_port)

    def prepare(self, key: str) -> None:
        self.ns[key] = self.lan.add()
        keys = load_or_create_keys(self.tmp / key / "federation")
        self.ids[key], self.keys[key] = keys.node_id, keys.public

    def config(self, key: str, node_name: str, trusted: list[str]) -> Path:
        document = {
            "node_name": node_name,
            "data_dir": str(self.tmp / key),
            "messaging": {"port": self.pub, "backend_port": self.sub},
            "bridge": {"enabled": False},
            "web": {"enabled": False},
            "certificates": {"enabled": False},
            "discovery": {"liveness_interval": LIVENESS,
                          "federation": {"export_port": self.export,
                                         "trusted_peers": [self.ids[t] for t in trusted]}},
        }
        path = self.tmp / f"{key}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    def start(self, key: str, node_name: str, trusted: list[str]) -> Node:
        node = Node(self.ns[key], self.config(key, node_name, trusted), self.tmp / key,
                    self.tmp / f"{key}.log")
        self.nodes[key] = node.start()
        return node

    def run(self, key: str, node_name: str, trusted: list[str]) -> subprocess.Popen[bytes]:
        """The appliance as a user starts it."""
        config = self.config(key, node_name, trusted)
        process = self.ns[key].popen(
            self.ns[key].python("-m", "argentic_edge", "run", "--config", str(config)),
            env={"ARGENTIC_EDGE_DATA_DIR": str(self.tmp / key)},
            stdout=subprocess.DEVNULL, stderr=(self.tmp / f"{key}.log").open("ab"))
        self.runs[key] = process
        return process

    def exchange(self, keys: list[str], count: int) -> dict[str, Counter[str]]:
        """An agent on each node publishes ``count`` messages; what each agent received."""
        agents, lines = {}, {}
        for key in keys:
            agents[key] = self.ns[key].popen(
                self.ns[key].python("-m", "tests.support.netns_agent",
                                    "--publish", f"tcp://127.0.0.1:{self.pub}",
                                    "--subscribe", f"tcp://127.0.0.1:{self.sub}",
                                    "--origin", key, "--expect", ",".join(keys),
                                    "--count", str(count)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            lines[key] = Lines(agents[key].stdout)  # type: ignore[arg-type]
        try:
            for key in keys:
                assert "warm" in json.loads(lines[key].next(20)), key
            for command in (b"go\n", b"report\n"):
                for key in keys:
                    agents[key].stdin.write(command)  # type: ignore[union-attr]
                    agents[key].stdin.flush()  # type: ignore[union-attr]
            return {key: Counter(json.loads(lines[key].next(20))["counts"]) for key in keys}
        finally:
            for process in agents.values():
                process.stdin.close()  # type: ignore[union-attr]
                process.wait(timeout=10)

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        for process in self.runs.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        self.lan.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    lan = Lan().create()
    site = Site(lan, tmp_path_factory.mktemp("federation"))
    try:
        for key in ("a", "b", "c", "d"):
            site.prepare(key)
        site.start("a", "node-a", ["b", "c"])
        site.run("b", "node-b", ["a", "c"])
        yield site
    finally:
        site.close()


def assert_exactly_once(counts: dict[str, Counter[str]], origins: list[str], count: int) -> None:
    for key, received in counts.items():
        assert sum(received.values()) == len(origins) * count, key
        assert set(received.values()) == {1}, f"{key} got duplicates"
        assert {name.split("/")[0] for name in received} == set(origins), key


def test_two_appliances_discover_link_and_exchange_each_message_once(site: Site) -> None:
    a = site.nodes["a"]
    linked = a.wait_peer("node-b", "linked", 20)["peer"]
    assert linked["id"] == site.ids["b"] and linked["addresses"] == [site.ns["b"].address]

    listing = site.ns["a"].run(site.ns["a"].python("-m", "argentic_edge", "peers", "--json",
                                                  "--timeout", "2"), timeout=30)
    assert listing.returncode == 0, listing.stderr
    found = {peer["name"]: peer for peer in json.loads(listing.stdout)["peers"]}
    assert found["node-b"]["id"] == site.ids["b"]
    assert (found["node-b"]["pub"], found["node-b"]["sub"], found["node-b"]["fed"]) == (
        site.pub, site.sub, site.export)
    assert found["node-a"]["curve"] == site.keys["a"]

    assert_exactly_once(site.exchange(["a", "b"], 200), ["a", "b"], 200)
    status = a.status()
    assert status["bus"]["mode"] == "federated"
    assert status["peers"]["federation"] is True and status["peers"]["node_id"] == site.ids["a"]


def test_a_stranger_s_key_is_refused_at_the_export_port(site: Site) -> None:
    stranger = site.ns["d"]  # nothing runs there yet
    result = stranger.run(stranger.python(
        "-m", "tests.support.netns_curve_client", f"tcp://{site.ns['a'].address}:{site.export}",
        site.keys["a"]), timeout=30)
    assert json.loads(result.stdout) == {"handshake": "refused", "received": 0}, result.stderr
    assert site.nodes["a"].status()["peers"]["counters"]["zap_denied"] >= 1


def test_a_killed_appliance_is_marked_lost_and_links_again_when_restarted(site: Site) -> None:
    a = site.nodes["a"]
    a.wait_peer("node-b", "linked", 20)
    site.runs["b"].kill()
    lost = a.wait_peer("node-b", "lost", 10)
    assert lost["elapsed"] <= 3 * LIVENESS + 2.0
    site.run("b", "node-b", ["a", "c"])
    a.wait_peer("node-b", "linked", 20)
    assert_exactly_once(site.exchange(["a", "b"], 50), ["a", "b"], 50)


def test_three_appliances_in_a_full_mesh_still_deliver_each_message_once(site: Site) -> None:
    # The third one takes node-a's name: mDNS makes it "node-a (2)", nothing breaks.
    c = site.start("c", "node-a", ["a", "b"])
    c.wait_peer(site.ids["a"], "linked", 20)
    c.wait_peer(site.ids["b"], "linked", 20)
    site.nodes["a"].wait_peer(site.ids["c"], "linked", 20)
    assert c.status()["peers"]["name"] == "node-a (2)"
    assert_exactly_once(site.exchange(["a", "b", "c"], 200), ["a", "b", "c"], 200)


def test_approving_at_runtime_links_both_ways_and_forgetting_unlinks(site: Site) -> None:
    a, d = site.nodes["a"], site.start("d", "node-d", [])
    a.wait_peer(site.ids["d"], "discovered", 20)
    d.wait_peer(site.ids["a"], "discovered", 20)

    reply = a.request({"op": "approve", "id": site.ids["d"]})
    assert reply["ok"], reply
    a.wait_peer(site.ids["d"], "trusted", 5)      # D does not trust A yet: A's link is refused
    reply = d.request({"op": "approve", "id": site.ids["a"]})
    assert reply["ok"], reply
    d.wait_peer(site.ids["a"], "linked", 10)
    a.wait_peer(site.ids["d"], "linked", 10)      # A retried after its back-off
    saved = json.loads((site.tmp / "d" / "federation" / TRUST_FILE).read_text())
    assert [entry["id"] for entry in saved["approved"]] == [site.ids["a"]]

    reply = a.request({"op": "forget", "id": site.ids["d"]})
    assert reply["ok"], reply
    a.wait_peer(site.ids["d"], "discovered", 5)
    d.wait_peer(site.ids["a"], "trusted", 10)     # its connection was dropped and is refused


def test_a_damaged_key_file_stops_the_appliance_with_a_sentence(site: Site) -> None:
    broken = site.tmp / "broken"
    (broken / "federation").mkdir(parents=True)
    (broken / "federation" / "curve.json").write_text("{not json")
    config = site.config("broken", "node-x", [])  # its data_dir is site.tmp / "broken"
    result = site.ns["d"].run(site.ns["d"].python("-m", "argentic_edge", "run", "--config",
                                                  str(config)), timeout=30)
    assert result.returncode == 1
    assert "curve.json" in result.stderr and "Traceback" not in result.stderr
