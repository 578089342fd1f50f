"""The inspector's cost: the bus rate while it watches ``#`` beside nobody watching, the time of
``/api/inspector/topics`` with 10,000 topics, and the appliance's memory as ever more topics come.

- **bus rate**: one ``argentic-edge run`` (bus, web, inspector); bursts of 64 B frames on
  ``bench/t`` (bench.bus.throughput), alternating between an open ``/api/inspector/stream``
  (the inspector reads every message on its CPU budget) and none (its socket closed). Goal: ratio
  >= 0.9.
- **topics**: 10,000 distinct topics published while watched, then ``GET /api/inspector/topics``
  timed end to end over HTTP, median of the requests: the default answer (the first 500 of the
  10,000, sorted, with the totals; goal <= 50 ms) and all 10,000 rows (``limit=10000``).
- **memory**: the appliance's RSS after 10,000 topics and after 40,000 more distinct topics with
  1 KiB payloads (the table keeps at most 10,000; the rest are evicted).

Run: ``python -m bench.inspector [--quick] [--json FILE]``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import zmq

from bench.bus import throughput
from bench.common import median, ratio, suite_main
from tests.support.appliance import command, environment, rss_kib
from tests.support.brokers import free_port, wait_for_port
from tests.support.config import TOKEN, bus_section, config_document, web_section, write_yaml

BEARER = {"Authorization": f"Bearer {TOKEN}"}
TOPICS = 10_000
TOPICS_GOAL_MS = 50.0


class Watcher:
    """An open event stream of every message, read in a thread until closed."""

    def __init__(self, base: str) -> None:
        self.response = requests.get(
            f"{base}/api/inspector/stream?filter=%23", headers=BEARER, stream=True, timeout=30
        )
        self.response.raise_for_status()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            for _ in self.response.iter_content(65536):
                pass
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed under us: the end

    def close(self) -> None:
        self.response.close()
        self.thread.join(timeout=10)


def _inspector(base: str) -> dict[str, Any]:
    answer = requests.get(f"{base}/api/status", headers=BEARER, timeout=10)
    return dict(answer.json()["inspector"])


def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def _start(workdir: Path) -> tuple[Any, int, int, str]:
    import subprocess

    port, backend = free_port(), free_port()
    web = web_section()
    config = write_yaml(
        workdir / "edge.yaml",
        config_document(workdir / "data", messaging=bus_section(port, backend), web=web),
    )
    process = subprocess.Popen(
        command("--log-level", "error", "run", "--config", str(config)),
        env=environment(),
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    wait_for_port(web["port"])
    return process, port, backend, f"http://127.0.0.1:{web['port']}"


def rate_rows(port: int, backend: int, base: str, repeats: int, count: int) -> list[dict[str, Any]]:
    rates: dict[str, list[float]] = {"watching": [], "nobody": []}
    throughput(port, backend, 1, count // 10, 64)  # the first burst runs slow
    for repeat in range(repeats):
        for mode in ("watching", "nobody")[:: 1 if repeat % 2 else -1]:
            watcher = None
            if mode == "watching":
                watcher = Watcher(base)
                _until(lambda: _inspector(base)["watching"], 10, "the inspector to watch")
            else:
                _until(lambda: not _inspector(base)["watching"], 40, "the inspector to stop")
            try:
                rates[mode].append(throughput(port, backend, 1, count, 64)["rate"])
            finally:
                if watcher is not None:
                    watcher.close()
    ours, base_rate = median(rates["watching"]), median(rates["nobody"])
    return [
        {
            "scenario": "inspector: bus rate, 64 B, watching # (baseline: nobody watching; "
            "goal ratio >= 0.9)",
            "ours": ours,
            "baseline": base_rate,
            "ratio": ratio(ours, base_rate),
            "unit": "msg/s",
        }
    ]


def _seen(base: str) -> int:
    """Distinct topics the inspector has seen: those it keeps and those it evicted."""
    answer = requests.get(f"{base}/api/inspector/topics?limit=1", headers=BEARER, timeout=30)
    document = answer.json()
    return int(document["kept"]) + int(document["evicted"])


def _fill(port: int, base: str, first: int, total: int, payload: bytes) -> None:
    """Publish topics ``fill/<n>`` for n in [first, first + total) while a stream watches,
    paced near the inspector's budget, until it has seen them all."""
    watcher = Watcher(base)
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.connect(f"tcp://127.0.0.1:{port}")
    try:
        _until(lambda: _inspector(base)["watching"], 10, "the inspector to watch")
        time.sleep(0.3)
        for _ in range(5):  # what the budget sampled away is sent again
            for start in range(first, first + total, 250):
                for n in range(start, min(start + 250, first + total)):
                    socket.send(b"fill/%d " % n + payload)
                time.sleep(0.1)
            if _seen(base) >= first + total:
                return
        raise SystemExit(f"the inspector saw {_seen(base)} of {first + total} topics")
    finally:
        socket.close(linger=0)
        context.term()
        watcher.close()


def topic_rows(port: int, base: str, pid: int, quick: bool) -> list[dict[str, Any]]:
    _fill(port, base, 0, TOPICS, b'{"type": "DATA", "v": 1}')
    rows = []
    for query in ("", "?limit=10000"):
        times = []
        for _ in range(10 if quick else 30):
            started = time.perf_counter()
            answer = requests.get(f"{base}/api/inspector/topics{query}", headers=BEARER, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
        document = answer.json()
        rows.append(
            {
                "scenario": f"inspector: GET /api/inspector/topics{query}, "
                f"{len(document['topics']):,} of {document['total']:,} topics in the answer"
                + ("" if query else f" (goal <= {TOPICS_GOAL_MS:.0f} ms)"),
                "ours": median(times),
                "unit": "ms",
            }
        )
    rss_10k = rss_kib(pid)
    more = 20_000 if quick else 40_000
    _fill(port, base, TOPICS, more, b'{"type": "DATA", "pad": "' + b"x" * 1000 + b'"}')
    rss_more = rss_kib(pid)
    after = requests.get(f"{base}/api/inspector/topics?limit=1", headers=BEARER, timeout=30).json()
    return [
        *rows,
        {
            "scenario": f"inspector: appliance RSS with {TOPICS:,} topics",
            "ours": rss_10k / 1024,
            "unit": "MiB",
        },
        {
            "scenario": f"inspector: appliance RSS after {more:,} more topics of 1 KiB "
            f"({after['kept']:,} kept, {after['evicted']:,} evicted)",
            "ours": rss_more / 1024,
            "unit": "MiB",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    repeats = 3 if quick else 5
    count = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        process, port, backend, base = _start(Path(tmp))
        try:
            _until(
                lambda: (
                    "inspector"
                    in requests.get(f"{base}/api/status", headers=BEARER, timeout=10).json()
                ),
                20,
                "the web",
            )
            rows = rate_rows(port, backend, base, repeats, count)
            rows += topic_rows(port, base, process.pid, quick)
        finally:
            process.terminate()
            process.wait(timeout=15)
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "nobody watching", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
