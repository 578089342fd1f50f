"""A LAN of federated appliances in network namespaces, for the federation and fault tests.

``Site`` keeps one LAN, a namespace and a node key per appliance, and the bus ports every
appliance uses in its own namespace; nodes trust each other by configuration. Appliances run as
``Node``s (a control channel) or exactly as users start them (``run``).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argentic_edge.federation.identity import load_or_create_keys
from tests.support.brokers import free_port
from tests.support.netns import Lan, Lines, Namespace, Node, node_config

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

    def config(self, key: str, node_name: str, trusted: list[str], **sections: Any) -> Path:
        return node_config(
            self.tmp,
            key,
            node_name,
            self.pub,
            self.sub,
            {
                "liveness_interval": LIVENESS,
                "federation": {
                    "export_port": self.export,
                    "trusted_peers": [self.ids[t] for t in trusted],
                },
            },
            **sections,
        )

    def start(self, key: str, node_name: str, trusted: list[str], **sections: Any) -> Node:
        """Appliance ``key`` as a Node; ``sections`` (such as ``web``) go into its file."""
        node = Node(
            self.ns[key],
            self.config(key, node_name, trusted, **sections),
            self.tmp / key,
            self.tmp / f"{key}.log",
        )
        self.nodes[key] = node.start()
        return node

    def run(self, key: str, node_name: str, trusted: list[str]) -> subprocess.Popen[bytes]:
        """The appliance as a user starts it."""
        config = self.config(key, node_name, trusted)
        process = self.ns[key].popen(
            self.ns[key].python("-m", "argentic_edge", "run", "--config", str(config)),
            env={"ARGENTIC_EDGE_DATA_DIR": str(self.tmp / key)},
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / f"{key}.log").open("ab"),
        )
        self.runs[key] = process
        return process

    def exchange(
        self, keys: list[str], count: int, bus: dict[str, str] | None = None
    ) -> dict[str, Counter[str]]:
        """An agent on each node publishes ``count`` messages; what each agent received. An
        agent connects to the bus at ``bus[key]`` (a ``messaging:`` broker_address), else to
        its own node's."""
        agents, lines = {}, {}
        for key in keys:
            agents[key] = self.ns[key].popen(
                self.ns[key].python(
                    "-m",
                    "tests.support.netns_agent",
                    "--publish",
                    f"tcp://{(bus or {}).get(key, '127.0.0.1')}:{self.pub}",
                    "--subscribe",
                    f"tcp://{(bus or {}).get(key, '127.0.0.1')}:{self.sub}",
                    "--origin",
                    key,
                    "--expect",
                    ",".join(keys),
                    "--count",
                    str(count),
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
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


def assert_exactly_once(counts: dict[str, Counter[str]], origins: list[str], count: int) -> None:
    for key, received in counts.items():
        assert sum(received.values()) == len(origins) * count, key
        assert set(received.values()) == {1}, f"{key} got duplicates"
        assert {name.split("/")[0] for name in received} == set(origins), key
