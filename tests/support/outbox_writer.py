"""A process writing into a durable outbox as an uplink does, until it is killed.

    python -m tests.support.outbox_writer PATH

Each loop turn appends a batch of numbered messages (topic ``n/<number>``), hands the oldest to
a pretend link (``popleft``, so some are always in flight) and settles the oldest in flight
(``done``). After the turn, when the outbox has written it, the process prints
``committed <last appended> <settled numbers...>``: everything in that line is on disk. The
test kills it with SIGKILL at some point of this and checks what a restart finds.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from pathlib import Path

from argentic_edge.bridge.durable import DurableOutbox
from argentic_edge.bridge.outbox import Outgoing

BATCH = 50
IN_FLIGHT = 120


async def main(path: Path) -> None:
    box = DurableOutbox(path, 10**9, 1 << 40)
    in_flight: deque[Outgoing] = deque()
    number = 0
    while True:
        for _ in range(BATCH):
            box.append(Outgoing(f"n/{number}", str(number).encode(), 1, False))
            number += 1
        while box and len(in_flight) < IN_FLIGHT:
            in_flight.append(box.popleft())
        settled = []
        for _ in range(BATCH // 2):
            item = in_flight.popleft()
            box.done(item)
            settled.append(item.topic.removeprefix("n/"))
        await asyncio.sleep(0)  # the outbox writes this turn's changes here
        assert box.disk_errors == 0, box.disk_problem
        sys.stdout.write(f"committed {number - 1} {' '.join(settled)}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
