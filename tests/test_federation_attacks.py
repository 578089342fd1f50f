"""A hostile neighbour against federation, on a LAN of network namespaces.

node-a and node-c are real appliances that trust anyone (``trust: open``, the most exposed
setting) and link. A lure (tests/support/netns_lure.py) on a third machine advertises:

- a stranger whose addresses are off our subnet: one routed to the lure, loopback, a public
  one. We must never connect to any of them, though the stranger is trusted;
- a stranger on our subnet, as a control: we do connect to it (and the CURVE handshake fails),
  which shows the link machinery ran for the lure's records at all;
- a copy of node-c's record (its id and key are public) under another name, at the lure's
  address. It must not take node-c's place: no connection to the lure's copy, node-c stays
  linked at its own address, and the copy's goodbye does not make node-c lost.

Every TCP connection to the lure's ports is reported by the lure itself.

Then single forged mDNS answers, sent from the lure's namespace (never a real interface), each
of which used to take node-c away for good: a same-name SRV/A answer pointing node-c's host at
the lure, a spoofed goodbye for node-c, and a spoofed goodbye while a copy of node-c's record
waits for its id. Each must heal while node-c answers: node-c back in the table at its own
address, linked there, and no connection ever made to the lure.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from argentic_edge.discovery.record import SERVICE_TYPE, node_id
from tests.support.netns import Lan, Lines, Namespace, Node, netns_unavailable
from tests.support.netns import node_config as netns_node_config

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]

PUB, SUB, EXPORT = 6555, 6556, 6557  # namespaces of our own: every port is free
STRANGER_FED, CONTROL_FED = 7600, 7601
ROUTED = "10.99.0.5"  # on the lure, and routed there from node-a: reachable, but not our LAN
HEAL_WITHIN = 30.0  # generous: node-c answers a probe within a liveness interval (1 s here)
# zeroconf's browser asks for every instance at 0, 1, 4 and 9 s after it starts, then only
# when a record nears its expiry (about 15 min for PTR): forgeries are sent after that burst,
# in the steady state, where nothing but our own probes would bring a peer back.
STEADY_AFTER = 15.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def stranger_txt(fed: int) -> dict[str, str]:
    public = zmq.curve_keypair()[0].decode()
    return {
        "v": "1",
        "id": node_id(public),
        "curve": public,
        "ver": "0.0-lure",
        "pub": "6555",
        "sub": "6556",
        "fed": str(fed),
        "web": "0",
        "tls": "",
    }


def copy_txt(peer: dict[str, Any]) -> dict[str, str]:
    return {
        "v": "1",
        "id": peer["id"],
        "curve": peer["curve"],
        "ver": peer["version"],
        "pub": str(peer["pub"]),
        "sub": str(peer["sub"]),
        "fed": str(peer["fed"]),
        "web": str(peer["web"]),
        "tls": peer["tls"],
    }


@dataclass
class Lure:
    process: subprocess.Popen[bytes]
    lines: Lines
    early: list[str] = field(default_factory=list)  # connections before it said ready

    def connections(self, period: float) -> list[str]:
        """Connections reported within ``period`` s: a negative needs a window to look in."""
        seen, deadline = self.early, time.monotonic() + period
        self.early = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(json.loads(self.lines.next(left))["connection"])
            except TimeoutError:
                break
        return seen

    def wait_for(self, where: str, timeout: float) -> None:
        if where in self.early:
            self.early.remove(where)
            return
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if json.loads(self.lines.next(left)).get("connection") == where:
                return
        raise AssertionError(f"no connection to {where} within {timeout}s")

    def forge(self, records: list[dict[str, Any]]) -> None:
        """Have the lure send one mDNS answer holding these records (tests/support/netns_lure.py)."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"forge": records}) + "\n").encode())
        self.process.stdin.flush()
        while "forged" not in (line := json.loads(self.lines.next(10))):
            self.early.append(line["connection"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=15)


def start_lure(
    ns: Namespace, records: list[dict[str, Any]], listen: list[str], hold: tuple[str, ...] = ()
) -> Lure:
    argv = [
        "-m",
        "tests.support.netns_lure",
        "--interface",
        ns.address,
        "--records",
        json.dumps(records),
    ]
    for where in listen:
        argv += ["--listen", where]
    for where in hold:
        argv += ["--hold", where]
    process = ns.popen(ns.python(*argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lure = Lure(process, Lines(process.stdout))  # type: ignore[arg-type]
    while "ready" not in (line := json.loads(lure.lines.next(20))):
        lure.early.append(line["connection"])
    return lure


def node_config(tmp: Path, key: str, name: str, liveness: float = 1.0) -> Path:
    return netns_node_config(
        tmp,
        key,
        name,
        PUB,
        SUB,
        {"liveness_interval": liveness, "federation": {"trust": "open", "export_port": EXPORT}},
    )


@pytest.fixture
def lan() -> Iterator[Lan]:
    lan = Lan().create()
    try:
        yield lan
    finally:
        lan.close()


def peer_named(node: Node, name: str) -> dict[str, Any]:
    return next(p for p in node.status()["peers"]["peers"] if p["name"] == name)


def test_a_peer_can_neither_send_us_elsewhere_nor_take_another_peers_place(
    lan: Lan, tmp_path: Path
) -> None:
    ns_a, ns_c, ns_lure = lan.add(), lan.add(), lan.add()
    _ip("-n", ns_lure.name, "addr", "add", f"{ROUTED}/32", "dev", "lo")
    _ip("-n", ns_a.name, "route", "add", f"{ROUTED}/32", "via", ns_lure.address)
    a = Node(ns_a, node_config(tmp_path, "a", "node-a"), tmp_path / "a", tmp_path / "a.log")
    c = Node(ns_c, node_config(tmp_path, "c", "node-c"), tmp_path / "c", tmp_path / "c.log")
    lures: list[Lure] = []
    try:
        a.start()
        c.start()
        a.wait_peer("node-c", "linked", 20)
        real_c = peer_named(a, "node-c")

        # node-a's own loopback, where a record naming 127.0.0.1 would send it.
        local = start_lure(ns_a, [], [f"127.0.0.1:{STRANGER_FED}"])
        lures.append(local)
        remote = start_lure(
            ns_lure,
            [
                {
                    "name": "stranger-offnet",
                    "txt": stranger_txt(STRANGER_FED),
                    "addresses": [ROUTED, "127.0.0.1", "8.8.8.8"],
                },
                {
                    "name": "stranger-onlan",
                    "txt": stranger_txt(CONTROL_FED),
                    "addresses": [ns_lure.address],
                },
                {"name": "node-c-copy", "txt": copy_txt(real_c), "addresses": [ns_lure.address]},
            ],
            [
                f"{ROUTED}:{STRANGER_FED}",
                f"{ns_lure.address}:{CONTROL_FED}",
                f"{ns_lure.address}:{EXPORT}",
            ],
        )
        lures.append(remote)

        remote.wait_for(f"{ns_lure.address}:{CONTROL_FED}", 20)  # the control: links do run
        a.wait_peer("stranger-offnet", "trusted", 10)
        deadline = time.monotonic() + 10
        while a.status()["peers"]["counters"].get("duplicate_id", 0) < 1:
            assert time.monotonic() < deadline, a.status()["peers"]["counters"]
            time.sleep(0.1)
        # Links are retried within a second or two: none of them may go to the lure.
        stray = remote.connections(3.0) + local.connections(0.1)
        assert set(stray) <= {f"{ns_lure.address}:{CONTROL_FED}"}, stray

        offnet = peer_named(a, "stranger-offnet")
        assert offnet["link_address"] is None and offnet["link"] is None
        now_c = peer_named(a, "node-c")
        assert now_c["addresses"] == [ns_c.address] and now_c["state"] == "linked"
        assert not any(p["name"] == "node-c-copy" for p in a.status()["peers"]["peers"])

        remote.close()  # goodbye for every record of the lure, the copy of node-c included
        lures.remove(remote)
        a.wait_peer("stranger-onlan", "lost", 10)
        assert peer_named(a, "node-c")["state"] == "linked"
    finally:
        for lure in lures:
            lure.close()
        a.stop()
        c.stop()


def test_a_link_that_never_completes_its_handshake_is_made_again(lan: Lan, tmp_path: Path) -> None:
    """A trusted peer whose export port accepts and then says nothing: libzmq alone would wait
    for its 30 s handshake timeout; the peers service connects anew after 5 s."""
    ns_a, ns_lure = lan.add(), lan.add()
    a = Node(ns_a, node_config(tmp_path, "a", "node-a"), tmp_path / "a", tmp_path / "a.log")
    lure: Lure | None = None
    try:
        a.start()
        silent = f"{ns_lure.address}:{CONTROL_FED}"
        lure = start_lure(
            ns_lure,
            [
                {
                    "name": "silent-peer",
                    "txt": stranger_txt(CONTROL_FED),
                    "addresses": [ns_lure.address],
                }
            ],
            [],
            hold=(silent,),
        )
        lure.wait_for(silent, 20)
        started = time.monotonic()
        lure.wait_for(silent, 12)
        assert time.monotonic() - started > 3, "connected again before the link was stuck"
        assert peer_named(a, "silent-peer")["state"] == "trusted"  # never linked
    finally:
        if lure is not None:
            lure.close()
        a.stop()


# --- forged answers ---------------------------------------------------------------------------


def instance(name: str) -> str:
    return f"{name}.{SERVICE_TYPE}"


def host_of(peer: dict[str, Any]) -> str:
    """The host name an appliance advertises (discovery.Record.service_info)."""
    return f"argentic-{peer['id'][:12]}.local."


def goodbye(peer: dict[str, Any], address: str) -> list[dict[str, Any]]:
    """What the peer itself sends when it stops: every record of its instance with TTL 0."""
    name = instance(peer["name"])
    return [
        {"type": "ptr", "name": SERVICE_TYPE, "alias": name, "ttl": 0},
        {"type": "srv", "name": name, "server": host_of(peer), "port": peer["pub"], "ttl": 0},
        {"type": "txt", "name": name, "txt": copy_txt(peer), "ttl": 0},
        {"type": "a", "name": host_of(peer), "address": address, "ttl": 0},
    ]


@contextmanager
def linked_pair(lan: Lan, tmp_path: Path, liveness: float = 1.0) -> Iterator[tuple[Node, Node]]:
    """node-a linked to node-c, in the steady state."""
    ns_a, ns_c = lan.add(), lan.add()
    a = Node(
        ns_a, node_config(tmp_path, "a", "node-a", liveness), tmp_path / "a", tmp_path / "a.log"
    )
    c = Node(ns_c, node_config(tmp_path, "c", "node-c"), tmp_path / "c", tmp_path / "c.log")
    try:
        a.start()
        c.start()
        a.wait_peer("node-c", "linked", 20)
        time.sleep(max(0.0, a.started_at + STEADY_AFTER - time.monotonic()))
        yield a, c
    finally:
        a.stop()
        c.stop()


def healed(a: Node, peer_id: str, ns_c: Namespace) -> tuple[bool, dict[str, Any]]:
    """Whether node-a holds node-c under its own name, at its own address, linked to its
    export port there; and what it holds."""
    status = a.status()
    peer = next((p for p in status["peers"]["peers"] if p["id"] == peer_id), None)
    link = status["bus"]["federation"]["links"].get(peer_id)
    ok = (
        peer is not None
        and peer["name"] == "node-c"
        and peer["state"] == "linked"
        and peer["addresses"] == [ns_c.address]
        and link is not None
        and link["endpoint"] == f"tcp://{ns_c.address}:{EXPORT}"
        and link["state"] == "up"
    )
    return ok, {"peer": peer, "link": link}


def wait_disturbed(a: Node, peer_id: str, ns_c: Namespace) -> None:
    """Until node-a shows the forgery's effect: proof that the forged answer was believed."""
    deadline = time.monotonic() + 10
    while healed(a, peer_id, ns_c)[0]:
        assert time.monotonic() < deadline, "node-a never believed the forged answer"
        time.sleep(0.05)


def forge_and_wait_lost(a: Node, lure: Lure, peer_id: str, records: list[dict[str, Any]]) -> float:
    """Forge ``records`` while node-a already waits for the peer to be lost (a lost state that
    heals quickly would escape a poll); fails if the forgery was not believed. Returns when
    (time.monotonic) the forgery was sent."""
    a.send({"op": "wait_peer", "peer": peer_id, "state": "lost", "timeout": 10})
    time.sleep(0.5)  # node-a has read the command and watches its table
    lure.forge(records)
    forged_at = time.monotonic()
    reply = a._reply(15)
    assert reply.get("ok"), f"node-a never believed the forged goodbye: {reply}"
    return forged_at


def wait_healed(a: Node, peer_id: str, ns_c: Namespace, since: float) -> float:
    """Seconds from ``since`` until node-a is healed; fails after HEAL_WITHIN with what it saw."""
    while time.monotonic() - since < HEAL_WITHIN:
        ok, seen = healed(a, peer_id, ns_c)
        if ok:
            return time.monotonic() - since
        time.sleep(0.2)
    raise AssertionError(f"node-c did not heal within {HEAL_WITHIN}s: {json.dumps(seen)}")


def copy_waiting_for_the_id(lan: Lan, a: Node) -> tuple[Lure, dict[str, Any]]:
    """A lure in a namespace of its own announcing a copy of node-c's record (and node-c's
    record), returned once node-a counts the copy as a duplicate id, as it must."""
    ns_lure = lan.add()
    real = peer_named(a, "node-c")
    lure = start_lure(
        ns_lure,
        [{"name": "node-c-copy", "txt": copy_txt(real), "addresses": [ns_lure.address]}],
        [f"{ns_lure.address}:{EXPORT}"],
    )
    try:
        deadline = time.monotonic() + 10
        while a.status()["peers"]["counters"].get("duplicate_id", 0) < 1:
            assert time.monotonic() < deadline, a.status()["peers"]["counters"]
            time.sleep(0.1)
    except BaseException:
        lure.close()
        raise
    return lure, real


def test_a_forged_srv_and_address_answer_does_not_move_the_link(lan: Lan, tmp_path: Path) -> None:
    """One answer with node-c's own instance and host names, its host at the lure's address."""
    with linked_pair(lan, tmp_path) as (a, c):
        ns_c = c.ns
        ns_lure = lan.add()
        lure = start_lure(ns_lure, [], [f"{ns_lure.address}:{EXPORT}"])
        try:
            real = peer_named(a, "node-c")
            forged_at = time.monotonic()
            lure.forge(
                [
                    {
                        "type": "srv",
                        "name": instance("node-c"),
                        "server": host_of(real),
                        "port": real["pub"],
                        "ttl": 60,
                    },
                    {"type": "a", "name": host_of(real), "address": ns_lure.address, "ttl": 60},
                ]
            )
            wait_disturbed(a, real["id"], ns_c)
            took = wait_healed(a, real["id"], ns_c, forged_at)
            print(f"forged SRV/A: healed {took:.1f}s after the forgery")
            assert lure.connections(5.0) == []
            wait_healed(a, real["id"], ns_c, time.monotonic())  # and it holds
        finally:
            lure.close()


def test_a_spoofed_goodbye_loses_a_live_peer_only_until_it_answers(
    lan: Lan, tmp_path: Path
) -> None:
    """A liveness interval of 5 s here: node-c's answer to a probe sent just before the goodbye
    would bring it back by luck (the old code too); with 5 s between probes that is rare."""
    with linked_pair(lan, tmp_path, liveness=5.0) as (a, c):
        ns_c = c.ns
        ns_lure = lan.add()
        lure = start_lure(ns_lure, [], [])
        try:
            real = peer_named(a, "node-c")
            forged_at = forge_and_wait_lost(a, lure, real["id"], goodbye(real, ns_c.address))
            took = wait_healed(a, real["id"], ns_c, forged_at)
            print(f"spoofed goodbye: linked again {took:.1f}s after the forgery")
        finally:
            lure.close()


def test_a_copy_cannot_take_the_id_of_a_peer_that_still_answers(lan: Lan, tmp_path: Path) -> None:
    """A copy of node-c's record waits for the id (duplicate_id); a spoofed goodbye for node-c
    used to hand it over, and then node-c itself was refused as the duplicate."""
    with linked_pair(lan, tmp_path) as (a, c):
        ns_c = c.ns
        lure, real = copy_waiting_for_the_id(lan, a)
        try:
            forged_at = forge_and_wait_lost(a, lure, real["id"], goodbye(real, ns_c.address))
            took = wait_healed(a, real["id"], ns_c, forged_at)
            print(f"copy plus spoofed goodbye: node-c linked again {took:.1f}s after")
            # Past the three silent intervals after which another claim would be heard.
            assert lure.connections(5.0) == []
            wait_healed(a, real["id"], ns_c, time.monotonic())
            assert not any(p["name"] == "node-c-copy" for p in a.status()["peers"]["peers"])
        finally:
            lure.close()


def test_a_copy_that_cannot_link_gives_the_id_back_to_the_real_peer(
    lan: Lan, tmp_path: Path
) -> None:
    """node-c goes silent (killed, no goodbye) while a copy waits: after three silent intervals
    the copy holds the id, as a renamed peer would. It never completes a CURVE handshake, so
    when node-c comes back its claim is heard and it is linked again."""
    with linked_pair(lan, tmp_path) as (a, c):
        lure, real = copy_waiting_for_the_id(lan, a)
        try:
            c.kill()
            a.wait_peer("node-c-copy", "trusted", 20)  # the copy holds the id now
            c.start()
            took = wait_healed(a, real["id"], c.ns, time.monotonic())
            print(f"copy holding the id: node-c linked again {took:.1f}s after its restart")
            time.sleep(5)  # and keeps it: the copy's claim waits again
            wait_healed(a, real["id"], c.ns, time.monotonic())
            assert not any(p["name"] == "node-c-copy" for p in a.status()["peers"]["peers"])
        finally:
            lure.close()
