"""Bus throughput and latency: our proxy (``argentic-edge proxy``) beside a bare libzmq proxy.

Both proxies run as their own processes, publishers in theirs, the subscriber here; every
scenario alternates ours and the baseline and repeats, and the medians and their ratio are
reported. Run: ``python -m bench.bus [--quick] [--json FILE]``.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from argentic_edge.bus.proxy import ProxyThread
from bench.common import median, percentile, ratio, suite_main
from tests.support.appliance import command, environment
from tests.support.brokers import free_port, wait_for_port
from tests.support.config import bus_section, config_document, write_yaml


def start_proxy(
    kind: str, port: int, backend: int, workdir: Path, ours: str = "proxy"
) -> subprocess.Popen[bytes]:
    """``kind`` "ours": ``argentic-edge <ours>`` (the standalone proxy, or ``run``: the
    appliance with the readers of its bus) with only the bus configured; "bare": the bare
    libzmq proxy. Returned once both ports accept connections."""
    if kind == "ours":
        config = write_yaml(
            workdir / f"{ours}-{port}.yaml",
            config_document(workdir / f"data-{port}", messaging=bus_section(port, backend)),
        )
        args = command("--log-level", "error", ours, "--config", str(config))
    else:
        args = [sys.executable, "-m", "bench.bare_proxy", str(port), str(backend)]
    process = subprocess.Popen(args, env=environment(), stdout=subprocess.DEVNULL)
    wait_for_port(port)
    wait_for_port(backend)
    return process


def _publisher(port: int, count: int, size: int, topic: bytes) -> None:
    """Send ``count`` frames once a subscription has arrived (an XPUB sees it; a PUB cannot)."""
    context = zmq.Context()
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.SNDHWM, 1000)
    socket.connect(f"tcp://127.0.0.1:{port}")
    socket.recv()
    frame = topic + b" " + b"x" * max(size - len(topic) - 1, 1)
    for _ in range(count):
        socket.send(frame)
    socket.close(linger=5000)
    context.term()


class CountingSink:
    """A subscriber that counts at libzmq's speed: a SUB feeding a proxy whose other side has
    no peers, so every message is read, counted by STATISTICS and dropped in C. A Python
    ``recv()`` loop tops out near 150k msg/s here and would measure itself, not the proxy."""

    def __init__(self, context: zmq.Context, backend: int, prefix: bytes) -> None:
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 1000)
        self.sub.connect(f"tcp://127.0.0.1:{backend}")
        self.sub.subscribe(prefix)
        drain = context.socket(zmq.PUB)
        drain.bind(f"inproc://sink-{id(self)}")
        self.proxy = ProxyThread(context, self.sub, drain, "sink")
        self.proxy.start()

    def count(self) -> int:
        return self.proxy.statistics().frontend.messages_in

    def close(self) -> None:
        self.proxy.stop()


def throughput(
    port: int,
    backend: int,
    publishers: int,
    count: int,
    size: int,
    subscribers: int = 1,
    topic: bytes = b"bench/t",
) -> dict[str, float]:
    """Messages per second the subscribers received in all, and the share lost on the way."""
    context = zmq.Context()
    sinks = [CountingSink(context, backend, topic) for _ in range(subscribers)]
    expected = publishers * count * subscribers
    warm = context.socket(zmq.PUB)  # every sink must be subscribed before the clock starts
    warm.connect(f"tcp://127.0.0.1:{port}")
    while min(sink.count() for sink in sinks) == 0:
        warm.send(topic + b"/warm-up")
        time.sleep(0.001)
    warm.close(linger=0)
    time.sleep(0.05)
    base = sum(sink.count() for sink in sinks)
    procs = [
        multiprocessing.Process(target=_publisher, args=(port, count, size, topic))
        for _ in range(publishers)
    ]
    for proc in procs:
        proc.start()
    first_time = last_time = 0.0
    first_count = last_count = 0
    while True:
        now, seen = time.perf_counter(), sum(sink.count() for sink in sinks) - base
        if seen and not first_count:
            first_time, first_count = now, seen
        if seen != last_count:
            last_time, last_count = now, seen
        elif (seen and (now - last_time > 0.3 or seen >= expected)) or (
            not seen and any(not p.is_alive() for p in procs) and now - first_time > 5
        ):
            break
        time.sleep(0.002)
    for proc in procs:
        proc.join(timeout=10)
    for sink in sinks:
        sink.close()
    context.term()
    rate = (last_count - first_count) / (last_time - first_time) if last_time > first_time else 0.0
    return {"rate": rate, "loss": 1 - last_count / expected}


def latency(port: int, backend: int, samples: int) -> list[float]:
    """One-way publish→receive times through the proxy, one message in flight at a time."""
    context = zmq.Context()
    pub = context.socket(zmq.XPUB)
    pub.connect(f"tcp://127.0.0.1:{port}")
    sub = context.socket(zmq.SUB)
    sub.connect(f"tcp://127.0.0.1:{backend}")
    sub.subscribe(b"lat")
    pub.recv()
    times = []
    for _ in range(samples + 100):
        started = time.perf_counter()
        pub.send(b"lat {}")
        sub.recv()
        times.append(time.perf_counter() - started)
    pub.close(linger=0)
    sub.close(linger=0)
    context.term()
    return times[100:]


def run(quick: bool) -> list[dict[str, object]]:
    repeats = 3 if quick else 5
    count = 200_000 if quick else 1_000_000
    samples = 2_000 if quick else 10_000
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for kind in ("ours", "bare"):
                port, backend = free_port(), free_port()
                proxy = start_proxy(kind, port, backend, workdir)
                try:
                    for size in (64, 1024):
                        for pubs in (1, 4):
                            result = throughput(port, backend, pubs, count // pubs, size)
                            results.setdefault(
                                (f"throughput {size} B, {pubs} pub", kind), []
                            ).append(result["rate"])
                            results.setdefault((f"loss {size} B, {pubs} pub", kind), []).append(
                                result["loss"]
                            )
                    for subscribers in (10, 100):
                        result = throughput(port, backend, 1, count // subscribers, 64, subscribers)
                        results.setdefault(
                            (f"fan-out deliveries 64 B, {subscribers} subs", kind), []
                        ).append(result["rate"])
                    times = latency(port, backend, samples)
                    results.setdefault(("latency p50 (µs)", kind), []).append(
                        percentile(times, 0.5) * 1e6
                    )
                    results.setdefault(("latency p99 (µs)", kind), []).append(
                        percentile(times, 0.99) * 1e6
                    )
                finally:
                    proxy.terminate()
                    proxy.wait(timeout=10)
        scenarios = dict.fromkeys(name for name, _ in results)
        for name in scenarios:
            ours, bare = median(results[(name, "ours")]), median(results[(name, "bare")])
            rows.append(
                {
                    "scenario": f"bus {name}",
                    "ours": ours,
                    "baseline": bare,
                    "ratio": ratio(ours, bare),
                    "unit": "msg/s"
                    if name.startswith(("throughput", "fan-out"))
                    else ("share" if name.startswith("loss") else "µs"),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "bare libzmq proxy", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
