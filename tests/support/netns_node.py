"""Runs one real appliance (Edge) and answers JSON-lines commands on stdin, for netns tests.

    python -m tests.support.netns_node CONFIG

Prints {"ready": true, ...} once every service is up, then one reply line per command:
  {"op": "status"}                                   → Edge.status()
  {"op": "approve" | "forget", "id": ID}             → the peers service's approve/forget
  {"op": "wait_peer", "peer": NAME|ID, "state": S, "timeout": T}
                                                     → waits on the PeerTable's event stream
End of input stops the appliance cleanly (goodbye packets included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from argentic_edge.app import Edge
from argentic_edge.config import load_config
from argentic_edge.discovery.record import Peer


def _matches(peer: Peer, wanted: str, state: str) -> bool:
    return (wanted in (peer.id, peer.name)) and peer.state == state


async def wait_peer(edge: Edge, wanted: str, state: str, timeout: float) -> dict[str, Any]:
    peers = edge.services["peers"]
    table = peers.table  # type: ignore[attr-defined]
    started = time.monotonic()
    events = table.subscribe()
    try:
        found = next((p for p in table.peers() if _matches(p, wanted, state)), None)
        deadline = started + timeout
        while found is None and (remaining := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                break
            if _matches(event.peer, wanted, state):
                found = event.peer
    finally:
        events.close()
    if found is None:
        return {"ok": False, "peers": [p.to_dict() for p in table.peers()]}
    return {"ok": True, "peer": found.to_dict(), "elapsed": time.monotonic() - started}


async def handle(edge: Edge, command: dict[str, Any]) -> dict[str, Any]:
    op = command.get("op")
    if op == "status":
        return edge.status()
    if op in ("approve", "forget"):
        try:
            return {"ok": True, "peer": await getattr(edge.services["peers"], op)(command["id"])}
        except Exception as exc:
            return {"ok": False, "error": str(exc)}
    if op == "wait_peer":
        return await wait_peer(edge, command["peer"], command["state"], command["timeout"])
    return {"ok": False, "error": f"unknown op {op!r}"}


async def main(config_path: str) -> None:
    config = load_config(config_path)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Edge(config, config_path=config_path) as edge:
        peers = edge.services.get("peers")  # absent when discovery is disabled
        keys = getattr(peers, "keys", None)
        ready = {"ready": True, "node_id": keys.node_id if keys else None}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        while line := await reader.readline():
            reply = await handle(edge, json.loads(line))
            sys.stdout.write(json.dumps(reply, default=str) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    asyncio.run(main(sys.argv[1]))
