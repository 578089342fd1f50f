"""Outbox cost: append + popleft + done through the durable (SQLite) outbox beside the memory one.

    python -m bench.outbox [--quick] [--json results.json]

What an uplink does while its broker is away and then back: messages come in batches (a bus read
batch, ``BATCH``) and are appended; then they are handed to the link and settled the same way.
Between batches the event loop gets a turn, which is when the durable outbox writes (one
transaction per batch). The file lives in a temporary directory on the machine's own disk (not
a tmpfs, where an fsync costs nothing). Rows: messages per second, medians over the repeats,
the memory outbox as the baseline, for ``synchronous=NORMAL`` (the default) and ``FULL``, in
bus-sized batches and one message at a time (every message its own transaction).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.bridge.durable import DurableOutbox
from argentic_edge.bridge.outbox import Outbox, Outgoing
from bench.common import median, ratio, suite_main

BATCH = 1024  # the uplink service's bus read batch
PAYLOAD = b'{"agent": "bench", "state": "ok", "value": 42.0}'  # a typical small status message


@dataclass(frozen=True)
class Plan:
    repeats: int
    count: int  # messages per run in batches
    single: int  # messages per run one at a time


FULL = Plan(repeats=5, count=200_000, single=2_000)
QUICK = Plan(repeats=3, count=50_000, single=1_000)

Factory = Callable[[Path], Outbox]


async def cycle(box: Outbox, count: int, batch: int) -> float:
    """Seconds to append, hand over and settle ``count`` messages ``batch`` at a time."""
    items = [Outgoing(f"bench/t/{index % 16}", PAYLOAD, 1, False) for index in range(count)]
    started = time.perf_counter()
    for first in range(0, count, batch):
        for item in items[first : first + batch]:
            box.append(item)
        await asyncio.sleep(0)  # the loop's turn: the durable outbox writes the batch here
        for _ in range(min(batch, count - first)):
            box.done(box.popleft())
        await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    assert not box, "every message was settled"
    return seconds


def rate(factory: Factory, count: int, batch: int, workdir: Path) -> float:
    box = factory(workdir / "bench.sqlite3")
    try:
        return count / asyncio.run(cycle(box, count, batch))
    finally:
        box.close()
        for path in workdir.iterdir():
            path.unlink()


def memory(_: Path) -> Outbox:
    return Outbox(10**9, 1 << 40)


def durable(synchronous: str) -> Factory:
    def make(path: Path) -> Outbox:
        return DurableOutbox(path, 10**9, 1 << 40, synchronous=synchronous)

    return make


def run(quick: bool) -> list[dict[str, Any]]:
    plan = QUICK if quick else FULL
    stores = {"memory": memory, "NORMAL": durable("NORMAL"), "FULL": durable("FULL")}
    shapes = {f"batches of {BATCH}": (plan.count, BATCH), "one at a time": (plan.single, 1)}
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-outbox-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        for _ in range(plan.repeats):  # interleaved, so a busy moment hits every store alike
            for shape, (count, batch) in shapes.items():
                for store, factory in stores.items():
                    rates.setdefault((shape, store), []).append(
                        rate(factory, count, batch, workdir)
                    )
    rows = []
    for shape in shapes:
        baseline = median(rates[(shape, "memory")])
        for store in ("NORMAL", "FULL"):
            ours = median(rates[(shape, store)])
            rows.append(
                {
                    "scenario": f"outbox append+popleft+done, {shape}: durable {store}",
                    "ours": ours,
                    "baseline": baseline,
                    "ratio": ratio(ours, baseline),
                    "unit": "msg/s",
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main(run, "memory outbox, same messages", __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
