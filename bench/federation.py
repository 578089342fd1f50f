"""Discovery and federation figures, measured between network namespaces (needs root).

    python -m bench.federation [--quick]

- discovery latency: from starting an appliance's process to a peer having it in its table,
  and to the federation link being up;
- loss detection: from SIGKILL to "lost" at the peer (liveness probing), and from a clean
  stop to "lost" (goodbye packets);
- throughput: a burst of 64-byte messages from a publisher to a subscriber through
  (1) one plain single-proxy bus — the baseline, (2) a federated node locally, and
  (3) federated A → B across the namespace LAN; each with its ratio to the baseline
  (the goal for A → B is at least 0.8).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import zmq

from argentic_edge.federation.identity import load_or_create_keys
from bench.common import Outcome, median, ratio, suite_main
from tests.support.config import config_document, write_yaml
from tests.support.netns import Lan, Lines, Namespace, Node, netns_unavailable

# --- the LAN ---------------------------------------------------------------------------------

# Inside fresh namespaces nothing else listens, so fixed ports are safe here.
PUB, SUB, EXPORT, RAW = 45555, 45556, 45557, 45560
HIGH_WATER_MARK = 1_000_000  # buffer the burst instead of dropping it: measure delivery


class Bench:
    def __init__(self, tmp: Path, liveness: float) -> None:
        self.tmp = tmp
        self.liveness = liveness
        self.lan = Lan().create()
        self.ns = {key: self.lan.add() for key in ("a", "b")}
        self.ids = {key: load_or_create_keys(tmp / key / "federation").node_id for key in self.ns}

    def config(
        self,
        key: str,
        node_name: str,
        *,
        federation: bool = True,
        ports: tuple[int, int] = (PUB, SUB),
    ) -> Path:
        other = "b" if key == "a" else "a"
        return write_yaml(
            self.tmp / f"{key}-{node_name}.yaml",
            config_document(
                self.tmp / key,
                node_name=node_name,
                messaging={
                    "port": ports[0],
                    "backend_port": ports[1],
                    "high_water_mark": HIGH_WATER_MARK,
                },
                discovery={
                    "enabled": federation,
                    "liveness_interval": self.liveness,
                    "federation": {"export_port": EXPORT, "trusted_peers": [self.ids[other]]},
                },
            ),
        )

    def node(self, key: str, node_name: str, **options: Any) -> Node:
        return Node(
            self.ns[key],
            self.config(key, node_name, **options),
            self.tmp / key,
            self.tmp / f"{key}.log",
        )

    def close(self) -> None:
        self.lan.close()


def discovery(bench: Bench, a: Node, rounds: int) -> dict[str, list[float]]:
    """Start B, wait until A sees it and links it; stop B cleanly (goodbye) each round."""
    seen, linked, goodbye = [], [], []
    for _ in range(rounds):
        started = time.monotonic()
        b = bench.node("b", "node-b").start()
        a.wait_peer("node-b", "discovered", 20)
        seen.append(time.monotonic() - started)
        a.wait_peer("node-b", "linked", 20)
        linked.append(time.monotonic() - started)
        asked = time.monotonic()
        b.stop()
        a.wait_peer("node-b", "lost", 20)
        goodbye.append(time.monotonic() - asked)
    return {"seen": seen, "linked": linked, "goodbye": goodbye}


def loss(bench: Bench, a: Node, rounds: int) -> list[float]:
    """SIGKILL B (no goodbye): how long until A calls it lost."""
    times = []
    for _ in range(rounds):
        b = bench.node("b", "node-b").start()
        a.wait_peer("node-b", "linked", 20)
        assert b.process is not None
        killed = time.monotonic()
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(timeout=10)
        a.wait_peer("node-b", "lost", 10 * bench.liveness + 10)
        times.append(time.monotonic() - killed)
    return times


@dataclass(frozen=True)
class Setup:
    """One publisher → subscriber path; ``pub_args``/``sub_args`` go to bench.fedload."""

    publisher: Namespace
    publish: str
    subscriber: Namespace
    subscribe: str
    pub_args: tuple[str, ...] = ()
    sub_args: tuple[str, ...] = ()


def burst(setup: Setup, count: int, size: int) -> dict[str, float]:
    """One burst of ``count`` messages; the subscriber's received count and rate."""
    python = [sys.executable, "-m", "bench.fedload"]
    sub = setup.subscriber.popen(
        [*python, "sub", setup.subscribe, "--count", str(count), *setup.sub_args],
        stdout=subprocess.PIPE,
    )
    sub_lines = Lines(sub.stdout)  # type: ignore[arg-type]
    assert "ready" in json.loads(sub_lines.next(20))
    pub = setup.publisher.popen(
        [
            *python,
            "pub",
            setup.publish,
            "--count",
            str(count),
            "--size",
            str(size),
            *setup.pub_args,
        ],
        stdin=subprocess.PIPE,
    )
    try:
        assert "warm" in json.loads(sub_lines.next(20))
        pub.stdin.write(b"go\n")  # type: ignore[union-attr]
        pub.stdin.flush()  # type: ignore[union-attr]
        result = json.loads(sub_lines.next(120))
    finally:
        pub.stdin.close()  # type: ignore[union-attr]
        pub.wait(timeout=60)
        sub.wait(timeout=10)
    return result


BASELINE = "single-node bus (baseline)"
CEILING = "raw libzmq CURVE hop A -> B"
FEDERATED = "federated A -> B"


def throughput(
    bench: Bench, a: Node, count: int, size: int, rounds: int
) -> dict[str, dict[str, float]]:
    ns_a, ns_b = bench.ns["a"], bench.ns["b"]
    local = (f"tcp://127.0.0.1:{PUB}", f"tcp://127.0.0.1:{SUB}")
    plain_ports = (PUB + 10, SUB + 10)
    plain = Node(
        ns_a,
        bench.config("a", "plain", federation=False, ports=plain_ports),
        bench.tmp / "plain",
        bench.tmp / "plain.log",
    )
    server_public, server_secret = (key.decode() for key in zmq.curve_keypair())
    setups = {
        BASELINE: Setup(
            ns_a, f"tcp://127.0.0.1:{plain_ports[0]}", ns_a, f"tcp://127.0.0.1:{plain_ports[1]}"
        ),
        "federated node, local": Setup(ns_a, local[0], ns_a, local[1]),
        CEILING: Setup(
            ns_a,
            f"tcp://0.0.0.0:{RAW}",
            ns_b,
            f"tcp://{ns_a.address}:{RAW}",
            ("--bind", "--curve-secret", server_secret),
            ("--curve-server", server_public),
        ),
        FEDERATED: Setup(ns_a, local[0], ns_b, local[1]),
    }
    b = bench.node("b", "node-b").start()
    plain.start()
    a.wait_peer("node-b", "linked", 20)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    try:
        for _ in range(rounds):  # interleaved, so drift on the machine hits every setup
            for name, setup in setups.items():
                results[name].append(burst(setup, count, size))
    finally:
        plain.stop()
        b.stop()
    return {
        name: {
            "rate": median([r["rate"] for r in runs]),
            "loss": 1 - min(r["received"] for r in runs) / count,
        }
        for name, runs in results.items()
    }


def measure_all(quick: bool, size: int = 64) -> list[dict[str, Any]]:
    reason = netns_unavailable()
    if reason is not None:
        raise SystemExit(reason)
    # Throughput is always the median of 3 interleaved rounds: one burst is too noisy.
    rounds, count = (1, 100_000) if quick else (3, 500_000)
    liveness = 1.0 if quick else 3.0
    with TemporaryDirectory(prefix="bench-federation-") as tmp:
        bench = Bench(Path(tmp), liveness)
        try:
            a = bench.node("a", "node-a").start()
            found = discovery(bench, a, rounds)
            killed = loss(bench, a, rounds)
            rates = throughput(bench, a, count, size, 3)
            a.stop()
        finally:
            bench.close()
    rows: list[dict[str, Any]] = [
        {"scenario": "process start -> peer seen", "ours": median(found["seen"]), "unit": "s"},
        {"scenario": "process start -> link up", "ours": median(found["linked"]), "unit": "s"},
        {"scenario": "clean stop -> lost (goodbye)", "ours": median(found["goodbye"]), "unit": "s"},
        {
            "scenario": f"SIGKILL -> lost (liveness {liveness:g} s)",
            "ours": median(killed),
            "unit": "s",
        },
    ]
    baseline = rates[BASELINE]["rate"]
    for name, result in rates.items():
        if name != BASELINE:
            rows.append(
                {
                    "scenario": f"{name}, {size} B x {count:,}",
                    "ours": result["rate"],
                    "baseline": baseline,
                    "ratio": ratio(result["rate"], baseline),
                    "unit": f"msg/s (loss {result['loss']:.1%})",
                }
            )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    return measure_all(quick)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size", type=int, default=64, help="message size in bytes, topic included (default 64)"
    )


def alone(args: argparse.Namespace) -> Outcome:
    return Outcome(measure_all(args.quick, args.size))


def main(argv: Sequence[str] | None = None) -> int:
    return suite_main(run, BASELINE, __doc__ or "", argv, options=options, measure=alone)


if __name__ == "__main__":
    sys.exit(main())
