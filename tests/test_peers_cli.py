"""`argentic-edge peers`, `peers approve NAME` and `peers forget NAME` through the real CLI,
against two real appliances (`run`) in network namespaces: through the running appliance's
API (HTTPS with its local CA, the API token), and through the trust store when none runs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from argentic_edge.federation.identity import load_or_create_keys
from tests.support.brokers import free_port
from tests.support.config import config_document, web_section, write_yaml
from tests.support.netns import Lan, Namespace, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]


class Pair:
    """node-a and node-b, each alone in its namespace, trusting no one yet."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lan = Lan().create()
        self.ns = {key: self.lan.add() for key in ("a", "b")}
        self.ids = {key: load_or_create_keys(tmp / key / "federation").node_id for key in "ab"}
        ports = {"port": free_port(), "backend_port": free_port()}
        export = free_port()
        self.configs: dict[str, Path] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        for key in ("a", "b"):
            self.documents[key] = config_document(
                tmp / key,
                node_name=f"node-{key}",
                messaging=ports,
                discovery={
                    "liveness_interval": 1.0,
                    "federation": {"export_port": export, "trust": "approved"},
                },
                web=web_section(),
                certificates={"enabled": True},
            )
            self.configs[key] = write_yaml(tmp / f"{key}.yaml", self.documents[key])
        self.runs: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, key: str) -> None:
        self.runs[key] = self.ns[key].popen(
            self.ns[key].python("-m", "argentic_edge", "run", "--config", str(self.configs[key])),
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / f"{key}.log").open("ab"),
        )

    def stop(self, key: str) -> None:
        self.runs[key].terminate()
        self.runs[key].wait(timeout=15)

    def cli(self, key: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        ns: Namespace = self.ns[key]
        return ns.run(
            ns.python("-m", "argentic_edge", *args, "-c", str(config or self.configs[key])),
            timeout=60,
        )

    def listing(self, key: str) -> dict[str, Any]:
        result = self.cli(key, "peers", "--json", "--timeout", "1.5")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_listing(self, key: str, check: Any, timeout: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            listing = self.listing(key)
            peers = {peer["name"]: peer for peer in listing["peers"]}
            if check(peers):
                return peers
            assert time.monotonic() < deadline, (listing, self.log("a"), self.log("b"))

    def log(self, key: str) -> str:
        return (self.tmp / f"{key}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    pair = Pair(tmp_path)
    try:
        yield pair
    finally:
        pair.lan.close()


def test_peers_lists_marks_itself_approves_and_forgets_through_the_api(pair: Pair) -> None:
    pair.run("a")
    pair.run("b")
    peers = pair.wait_listing(
        "a", lambda p: {"node-a", "node-b"} <= set(p) and p["node-b"]["state"] == "discovered"
    )
    assert peers["node-a"]["this_node"] is True and peers["node-b"]["this_node"] is False
    assert peers["node-b"]["trust"] is None and peers["node-b"]["id"] == pair.ids["b"]
    table = pair.cli("a", "peers", "--timeout", "1.5").stdout
    assert "node-a (this node)" in table and "not trusted" in table, table
    assert f"trust and links from https://127.0.0.1:{pair.documents['a']['web']['port']}" in table

    approved = pair.cli("a", "peers", "approve", "node-b")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"approved node-b ({pair.ids['b']}) on https://")
    assert pair.cli("b", "peers", "approve", pair.ids["a"][:8]).returncode == 0  # an id prefix
    peers = pair.wait_listing("a", lambda p: p["node-b"]["link"] == "up")
    assert peers["node-b"]["trust"] == "approved" and peers["node-b"]["state"] == "linked"
    table = pair.cli("a", "peers", "--timeout", "1.5").stdout
    row = next(line for line in table.splitlines() if line.startswith("node-b "))
    assert row.split()[-2:] == ["approved", "up"], table

    forgotten = pair.cli("a", "peers", "forget", "node-b")
    assert forgotten.returncode == 0 and forgotten.stdout.startswith("no longer trusting node-b")
    pair.wait_listing("a", lambda p: p["node-b"]["trust"] is None)
    unknown = pair.cli("a", "peers", "approve", "node-z")
    assert unknown.returncode == 1 and "no peer named 'node-z'" in unknown.stderr

    # A running appliance whose configuration gives no token is not written behind its back.
    document = {**pair.documents["b"], "web": {**pair.documents["b"]["web"], "api_token": None}}
    no_token = write_yaml(pair.tmp / "b-no-token.yaml", document)
    refused = pair.cli("b", "peers", "forget", "node-a", config=no_token)
    assert refused.returncode == 1 and "set web.api_token in" in refused.stderr
    assert "Traceback" not in refused.stderr

    # No appliance running: the trust store on disk, for the next start.
    pair.stop("a")
    offline = pair.cli("a", "peers", "approve", "node-b")
    assert offline.returncode == 0, offline.stderr
    assert "trusted.json (no appliance answered" in offline.stdout
    stored = json.loads((pair.tmp / "a" / "federation" / "trusted.json").read_text())
    assert [entry["id"] for entry in stored["approved"]] == [pair.ids["b"]]
    assert pair.cli("a", "peers", "forget", "node-b").returncode == 0
    stored = json.loads((pair.tmp / "a" / "federation" / "trusted.json").read_text())
    assert stored["approved"] == []
