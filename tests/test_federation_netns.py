"""Federation between real appliances in network namespaces, over real multicast and TCP.

One LAN for the module: node-a (n1), node-b (n2, run exactly as a user does:
``python -m argentic_edge run``), a third appliance (n3) and a late-comer (n4). a, b and the third
trust each other by configuration; n4 is approved at runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from argentic_edge.federation.trust import TRUST_FILE
from tests.support.federation import LIVENESS, Site, assert_exactly_once
from tests.support.netns import Lan, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]


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


def test_two_appliances_discover_link_and_exchange_each_message_once(site: Site) -> None:
    a = site.nodes["a"]
    linked = a.wait_peer("node-b", "linked", 20)["peer"]
    assert linked["id"] == site.ids["b"] and linked["addresses"] == [site.ns["b"].address]

    listing = site.ns["a"].run(
        site.ns["a"].python("-m", "argentic_edge", "peers", "--json", "--timeout", "2"), timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    found = {peer["name"]: peer for peer in json.loads(listing.stdout)["peers"]}
    assert found["node-b"]["id"] == site.ids["b"]
    assert (found["node-b"]["pub"], found["node-b"]["sub"], found["node-b"]["fed"]) == (
        site.pub,
        site.sub,
        site.export,
    )
    assert found["node-a"]["curve"] == site.keys["a"]

    assert_exactly_once(site.exchange(["a", "b"], 200), ["a", "b"], 200)
    status = a.status()
    assert status["bus"]["mode"] == "federated"
    assert status["peers"]["federation"] is True and status["peers"]["node_id"] == site.ids["a"]


def test_a_stranger_s_key_is_refused_at_the_export_port(site: Site) -> None:
    stranger = site.ns["d"]  # nothing runs there yet
    result = stranger.run(
        stranger.python(
            "-m",
            "tests.support.netns_curve_client",
            f"tcp://{site.ns['a'].address}:{site.export}",
            site.keys["a"],
        ),
        timeout=30,
    )
    assert json.loads(result.stdout) == {"handshake": "refused", "received": 0}, result.stderr
    assert site.nodes["a"].status()["peers"]["counters"]["zap_denied"] >= 1
    # named once, as a node nobody discovered (it advertised nothing)
    refusals = [
        line
        for line in (site.tmp / "a.log").read_text().splitlines()
        if "federation: refused a link from node" in line
    ]
    assert len(refusals) == 1 and "not discovered on this LAN and not trusted" in refusals[0]


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
    a.wait_peer(site.ids["d"], "trusted", 5)  # D does not trust A yet: A's link is refused
    reply = d.request({"op": "approve", "id": site.ids["a"]})
    assert reply["ok"], reply
    d.wait_peer(site.ids["a"], "linked", 10)
    a.wait_peer(site.ids["d"], "linked", 10)  # A retried after its back-off
    saved = json.loads((site.tmp / "d" / "federation" / TRUST_FILE).read_text())
    assert [entry["id"] for entry in saved["approved"]] == [site.ids["a"]]

    reply = a.request({"op": "forget", "id": site.ids["d"]})
    assert reply["ok"], reply
    a.wait_peer(site.ids["d"], "discovered", 5)
    d.wait_peer(site.ids["a"], "trusted", 10)  # its connection was dropped and is refused


def test_a_damaged_key_file_stops_the_appliance_with_a_sentence(site: Site) -> None:
    broken = site.tmp / "broken"
    (broken / "federation").mkdir(parents=True)
    (broken / "federation" / "curve.json").write_text("{not json")
    config = site.config("broken", "node-x", [])  # its data_dir is site.tmp / "broken"
    result = site.ns["d"].run(
        site.ns["d"].python("-m", "argentic_edge", "run", "--config", str(config)), timeout=30
    )
    assert result.returncode == 1
    assert "curve.json" in result.stderr and "Traceback" not in result.stderr
