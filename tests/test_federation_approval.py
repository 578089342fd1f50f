"""Approval between two real appliances in network namespaces: approving on one side shows a
link request on the other, each side logs the refusal once by name, and the second approval
links at once instead of after the first side's back-off. In Chromium inside a node's namespace:
the Peers card asks for the approval, and once both approved, the Overview map draws the peer
linked."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.brokers import MOSQUITTO, Mosquitto
from tests.support.browser_tests import ARTIFACTS, bridge_to, in_chromium
from tests.support.config import PASSWORD, web_section
from tests.support.federation import Site
from tests.support.netns import Lan, Node, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]
# After this long refused, the approving side's back-off (1, 2, 4 s, ...) is at 8 s: a link
# that comes up well within that did not wait for it.
BACKOFF_GROWN = 8.0
PROMPTLY = 4.0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(Lan().create(), tmp_path)
    try:
        for key in ("a", "b"):
            site.prepare(key)
        yield site
    finally:
        site.close()


def peer(node: Node, name: str) -> dict[str, Any]:
    return next(p for p in node.status()["peers"]["peers"] if p["name"] == name)


def wait(
    node: Node, name: str, test: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """Until peer ``name`` in ``node``'s status passes ``test``; that peer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = peer(node, name)
        if test(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{name} never got there: {peer(node, name)}")


def page_of(site: Site, *args: str) -> str:
    """What tests/support/netns_page.py prints of node-a's page about its peer node-b, in
    Chromium in node-a's namespace."""
    ns = site.ns["a"]
    url = f"http://127.0.0.1:{site.nodes['a'].status()['web']['port']}/"
    page = ns.run(
        ns.python("-m", "tests.support.netns_page", url, PASSWORD, "node-b", *args), timeout=120
    )
    assert page.returncode == 0, page.stderr
    return str(page.stdout)


def test_approving_on_one_side_asks_the_other_and_the_second_approval_links_at_once(
    site: Site,
) -> None:
    a = site.start("a", "node-a", [])
    b = site.start("b", "node-b", [])
    a.wait_peer("node-b", "discovered", 20)
    b.wait_peer("node-a", "discovered", 20)
    assert peer(b, "node-a")["link_request"] is None

    assert a.request({"op": "approve", "id": site.ids["b"]})["ok"]
    refused = wait(a, "node-b", lambda p: p["link"] == "refused")
    assert refused["state"] == "trusted"
    asked = wait(b, "node-a", lambda p: p["link_request"] is not None)
    assert asked["state"] == "discovered" and asked["trust"] is None
    time.sleep(BACKOFF_GROWN)

    assert b.request({"op": "approve", "id": site.ids["a"]})["ok"]
    started = time.monotonic()
    b.wait_peer("node-a", "linked", PROMPTLY)
    a.wait_peer("node-b", "linked", PROMPTLY)
    print(f"\nlinked {time.monotonic() - started:.2f} s after the second approval")
    assert peer(b, "node-a")["link_request"] is None

    a_log = (site.tmp / "a.log").read_text()
    b_log = (site.tmp / "b.log").read_text()
    address_b, address_a = site.ns["b"].address, site.ns["a"].address
    assert a_log.count("has not approved this node yet") == 1, a_log
    assert f"node-b ({address_b}, id {site.ids['b']}) has not approved" in a_log
    assert b_log.count("wants to link with this node") == 1, b_log
    assert f"node-a ({address_a}, id {site.ids['a']}) wants to link" in b_log
    for log in (a_log, b_log):
        assert "refused our link" not in log and "refused a peer connection" not in log


@in_chromium
def test_the_peers_and_bus_cards_of_a_lan_node_in_chromium_at_1280_px(site: Site) -> None:
    """The page of node-a, in Chromium inside node-a's namespace: node-b, which approved us,
    shows as a link request with one Approve button, its address and last-seen, no word
    broken across lines; approving it leaves no Approve button. The Bus card names node-a's
    LAN address, and the Argentic configuration it offers reaches the bus from node-b."""
    a = site.start("a", "node-a", [], web=web_section(host="0.0.0.0"))
    b = site.start("b", "node-b", [])
    a.wait_peer("node-b", "discovered", 20)
    b.wait_peer("node-a", "discovered", 20)
    assert b.request({"op": "approve", "id": site.ids["a"]})["ok"]
    wait(a, "node-b", lambda p: p["link_request"] is not None)

    before, after = (json.loads(line) for line in page_of(site, "--approve").splitlines())
    address_a, address_b = site.ns["a"].address, site.ns["b"].address

    row = next(r for r in before["rows"] if r["cells"][0].startswith("node-b"))
    name, address, state, trust, seen, _ = row["cells"]
    assert name == f"node-b{site.ids['b']}" and address == address_b
    assert state.startswith("wants to link (asked ") and trust == "not trusted"
    assert seen.endswith(" ago") and row["buttons"] == ["Approve"]
    assert before["broken"] == [], before["broken"]
    assert before["connect"] == [
        f"tcp://{address_a}:{site.pub} publish · tcp://{address_a}:{site.sub} subscribe"
    ]
    assert before["copy"] == ["Copy Argentic configuration"]
    assert before["copied"] == before["yaml"]

    row = next(r for r in after["rows"] if r["cells"][0].startswith("node-b"))
    assert "Approve" not in row["buttons"] and row["cells"][3] == "approved", row
    assert after["broken"] == [], after["broken"]
    a.wait_peer("node-b", "linked", 20)

    messaging = yaml.safe_load(before["yaml"])["messaging"]
    assert messaging == {
        "protocol": "zeromq",
        "broker_address": address_a,
        "port": site.pub,
        "backend_port": site.sub,
        "start_proxy": False,
        "proxy_mode": "external",
    }
    assert a.status()["bus"]["connect"] == {
        "addresses": [address_a],
        "messaging_yaml": before["yaml"],
    }
    assert (
        f"bus: agents on the LAN connect to {address_a} (publish :{site.pub}, subscribe "
        f":{site.sub})" in (site.tmp / "a.log").read_text()
    )
    counts = site.exchange(["b"], 20, bus={"b": messaging["broker_address"]})
    assert sum(counts["b"].values()) == 20 and set(counts["b"].values()) == {1}


@in_chromium
def test_the_overview_map_of_a_lan_node_in_chromium_draws_its_linked_peer(site: Site) -> None:
    """node-a and node-b find each other by mDNS and link once each approved the other; node-a
    also has an MQTT uplink, to a Mosquitto in its namespace. Its Overview page, in Chromium
    inside that namespace, draws node-b as a peer inside the map, on a solid (up) line to it
    worded "linked", beside the uplink on an up line worded "connected"."""
    broker = Mosquitto(site.tmp / "mosquitto")
    broker.write_conf()
    site.ns["a"].popen(
        [MOSQUITTO, "-c", str(broker.conf_path)],
        stdout=subprocess.DEVNULL,
        stderr=(site.tmp / "mosquitto.log").open("ab"),
    )
    a = site.start("a", "node-a", [], web=web_section(), bridge=bridge_to(broker.port))
    b = site.start("b", "node-b", [])
    a.wait_peer("node-b", "discovered", 20)
    b.wait_peer("node-a", "discovered", 20)
    assert b.request({"op": "approve", "id": site.ids["a"]})["ok"]
    assert a.request({"op": "approve", "id": site.ids["b"]})["ok"]
    a.wait_peer("node-b", "linked", 20)

    shot = ARTIFACTS / "inspector-overview-peer.png"
    shot.unlink(missing_ok=True)
    drawn = json.loads(page_of(site, "--map", str(shot)))
    assert drawn["self"] == "node-a"
    peer_node, uplink_node = drawn["nodes"]
    assert peer_node == {
        "kind": "peer",
        "name": "node-b",
        "label": "node-b",
        "inside": True,
        "line": "up",
        "ends_at_circle": True,
        "words": "linked",
    }, drawn
    # its words gain the uplink's rates once the charts have two samples (10 s apart)
    assert uplink_node.pop("words").startswith("connected"), drawn
    assert uplink_node == {
        "kind": "uplink",
        "name": "mqtt",
        "label": "mqtt",
        "inside": True,
        "line": "up",
        "ends_at_circle": True,
    }, drawn
    assert shot.stat().st_size > 0
