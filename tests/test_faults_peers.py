"""A federation peer that flaps, vanishes, and comes back with a new key, seen from a survivor.

Two appliances on a LAN of network namespaces trust each other. The peer is SIGKILLed and
restarted again and again, about a second up and a second down (every other time down until
the survivor declares it lost, so links are torn down and made again); then it vanishes; then it
returns with a freshly generated key (a reinstalled box under the same name). The survivor's
peer table must say the right thing at each step (one entry per id, linked only while trusted
and there), its federation links must follow, messages must cross while linked, and its threads
and file descriptors (read from /proc) must not grow with the number of flaps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from argentic_edge.federation.identity import KEY_FILE, load_or_create_keys
from tests.support.appliance import fd_count, thread_count
from tests.support.federation import LIVENESS, Site, assert_exactly_once, prepared_site
from tests.support.netns import Node, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]

FLAPS = 6
FD_SLACK = 6  # descriptors a resolver or a log rotation may open once; flaps must add none
THREAD_SLACK = 2


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with prepared_site(tmp_path) as site:
        yield site


def resources(node: Node) -> dict[str, int]:
    assert node.process is not None
    return {"fds": fd_count(node.process.pid), "threads": thread_count(node.process.pid)}


def entries(node: Node, name: str) -> list[dict[str, Any]]:
    return [p for p in node.status()["peers"]["peers"] if p["name"] == name]


def links(node: Node) -> dict[str, Any]:
    return node.status()["bus"]["federation"]["links"]  # type: ignore[no-any-return]


def test_a_flapping_vanishing_rekeyed_peer_leaves_the_survivor_right_and_leak_free(
    site: Site,
) -> None:
    a = site.start("a", "node-a", ["b"])
    b = site.start("b", "node-b", ["a"])
    a.wait_peer(site.ids["b"], "linked", 20)
    assert_exactly_once(site.exchange(["a", "b"], 20), ["a", "b"], 20)
    baseline = resources(a)
    figures: dict[str, Any] = {"flaps": FLAPS, "before": baseline}

    for flap in range(FLAPS):
        b.kill()
        if flap % 2:  # down long enough to be noticed: the link goes, and is made again
            a.wait_peer(site.ids["b"], "lost", 3 * LIVENESS + 5)
            assert links(a) == {}
        else:  # about a second down (and a second to start): libzmq reconnects the link
            time.sleep(LIVENESS)
        b.start()
        a.wait_peer(site.ids["b"], "linked", 20)
    assert [p["state"] for p in entries(a, "node-b")] == ["linked"]
    assert list(links(a)) == [site.ids["b"]] and links(a)[site.ids["b"]]["state"] == "up"
    assert_exactly_once(site.exchange(["a", "b"], 20), ["a", "b"], 20)
    figures["after_flaps"] = after = resources(a)
    assert after["fds"] - baseline["fds"] <= FD_SLACK, figures
    assert after["threads"] - baseline["threads"] <= THREAD_SLACK, figures

    b.kill()  # vanishes
    a.wait_peer(site.ids["b"], "lost", 3 * LIVENESS + 5)
    assert links(a) == {}
    figures["vanished"] = resources(a)

    old_id = site.ids["b"]
    (site.tmp / "b" / "federation" / KEY_FILE).unlink()  # reinstalled: a new key, same name
    site.ids["b"] = load_or_create_keys(site.tmp / "b" / "federation").node_id
    assert site.ids["b"] != old_id
    b = site.start("b", "node-b", ["a"])
    a.wait_peer(site.ids["b"], "discovered", 20)  # a stranger now: seen, not trusted, no link
    states = {p["id"]: p["state"] for p in a.status()["peers"]["peers"]}
    assert states[site.ids["b"]] == "discovered" and states.get(old_id, "lost") == "lost"
    assert links(a) == {}
    figures["rekeyed"] = end = resources(a)
    print(f"\npeer flap figures: {json.dumps(figures)}")
    assert end["fds"] - baseline["fds"] <= FD_SLACK, figures
    assert end["threads"] - baseline["threads"] <= THREAD_SLACK, figures
