"""Bus readers under a flood: the bus rate on a topic the appliance reads in Python, beside a bare
libzmq proxy, and the event loop's lag while one publisher floods that topic.

- **watched topic**: ``argentic-edge run`` (the bus and the agents registry, which reads
  ``agent/status/info``) and the bare proxy, alternated and repeated; a burst of 64 B frames on
  ``agent/status/info`` to a subscriber that counts at libzmq's speed (bench.bus.throughput).
  The same on ``bench/t``, which no Python reader watches, for contrast.
- **event-loop lag**: the appliance in a child process with a probe task that sleeps 10 ms and
  records how late it wakes up, while a PUB in another process floods ``agent/status/info``;
  max and p99 of the lateness beside the same probe on an idle appliance.

Run: ``python -m bench.readers [--quick] [--json FILE]``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.bus import start_proxy, throughput
from bench.common import median, percentile, ratio, suite_main
from tests.support.brokers import free_port
from tests.support.config import bus_section, config_document
from tests.support.flood import Flood

WATCHED = b"agent/status/info"
UNWATCHED = b"bench/t"
PROBE_INTERVAL = 0.01  # seconds the lag probe sleeps between wake-ups
LAG_GOAL_MS = 100.0


def watched_rates(repeats: int, count: int, workdir: Path) -> list[dict[str, Any]]:
    """Both proxies run side by side; bursts alternate between them, so a neighbour's load
    on a shared machine hits both alike."""
    results: dict[tuple[bytes, str], list[float]] = {}
    ports = {kind: (free_port(), free_port()) for kind in ("ours", "bare")}
    processes = [start_proxy(kind, *ports[kind], workdir, ours="run") for kind in ports]
    try:
        time.sleep(0.3)  # the registry's subscriptions reach the proxy
        for kind in ports:
            throughput(*ports[kind], 1, count // 10, 64)  # the first burst runs slow
        for repeat in range(repeats):
            for topic in (WATCHED, UNWATCHED):
                for kind in ("ours", "bare")[:: 1 if repeat % 2 else -1]:
                    rate = throughput(*ports[kind], 1, count, 64, topic=topic)["rate"]
                    results.setdefault((topic, kind), []).append(rate)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
    rows = []
    for topic, label in ((WATCHED, "watched by the registry"), (UNWATCHED, "unwatched")):
        ours, bare = median(results[(topic, "ours")]), median(results[(topic, "bare")])
        rows.append(
            {
                "scenario": f"readers: bus rate, {topic.decode()} ({label}), 64 B",
                "ours": ours,
                "baseline": bare,
                "ratio": ratio(ours, bare),
                "unit": "msg/s",
            }
        )
    return rows


def _appliance_with_probe(document: dict[str, Any], pipe: Connection) -> None:
    """Child: the appliance plus a lag probe; sends "ready", then on "stop" the lag samples
    (ms) and the registry's reader counters."""
    from argentic_edge.app import Edge
    from argentic_edge.config import parse_config

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(pipe.fileno(), stop.set)
        async with Edge(parse_config(document)) as edge:
            pipe.send("ready")
            lags: list[float] = []
            while not stop.is_set():
                started = time.perf_counter()
                await asyncio.sleep(PROBE_INTERVAL)
                lags.append((time.perf_counter() - started - PROBE_INTERVAL) * 1000)
            pipe.recv()
            pipe.send((lags, edge.status()["agents"].get("reader", {})))

    asyncio.run(main())


def lag(
    workdir: Path, flood_frames: int | None, seconds: float
) -> tuple[list[float], dict[str, Any]]:
    """Lag samples of one appliance, under a flood of ``flood_frames`` frames or idle."""
    port, backend = free_port(), free_port()
    document = config_document(workdir / f"lag-{port}", messaging=bus_section(port, backend))
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_appliance_with_probe, args=(document, child))
    process.start()
    try:
        assert parent.poll(30), "the appliance did not start"
        parent.recv()
        if flood_frames is None:
            time.sleep(seconds)
        else:
            flood = Flood(f"tcp://127.0.0.1:{port}", WATCHED.decode(), flood_frames).start()
            deadline = time.monotonic() + seconds
            while flood.running and time.monotonic() < deadline:
                time.sleep(0.05)
            flood.stop()
        parent.send("stop")
        lags, reader = parent.recv()
    finally:
        process.join(timeout=30)
    return lags, reader


def lag_rows(repeats: int, frames: int, seconds: float, workdir: Path) -> list[dict[str, Any]]:
    flooded: list[list[float]] = []
    idle: list[list[float]] = []
    skipped: list[float] = []
    for _ in range(repeats):
        samples, reader = lag(workdir, frames, seconds)
        flooded.append(samples)
        skipped.append(reader.get("skipped", 0) + 0.0)
        idle.append(lag(workdir, None, 1.0)[0])
    rows = []
    for name, pick in (("max", max), ("p99", lambda s: percentile(s, 0.99))):
        ours = median(pick(s) for s in flooded)
        base = median(pick(s) for s in idle)
        rows.append(
            {
                "scenario": f"readers: event-loop lag {name}, flood on "
                f"{WATCHED.decode()} (baseline: idle; goal < "
                f"{LAG_GOAL_MS:.0f} ms)",
                "ours": ours,
                "baseline": base,
                "ratio": ratio(ours, base),
                "unit": "ms",
            }
        )
    rows.append(
        {
            "scenario": "readers: frames the registry skipped under that flood",
            "ours": median(skipped),
            "unit": "frames",
        }
    )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    repeats = 3 if quick else 5
    count = 200_000 if quick else 1_000_000
    frames, seconds = (5_000_000, 4.0) if quick else (20_000_000, 10.0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        return watched_rates(repeats, count, workdir) + lag_rows(repeats, frames, seconds, workdir)


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "bare libzmq proxy; idle appliance for the lag", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
