"""Runs inside a network namespace for bench/web.py (mDNS never reaches the real LAN).

    python -m bench.web_probe ROUNDS REQUESTS     two appliances, measured; prints one JSON line
    python -m bench.web_probe client              the HTTP client (started by the former)

Two appliances run in this process: "empty" (the baseline) and "full", whose peer table gets
PEERS synthetic peers through PeerTable.upsert and whose agents service learns AGENTS clients and
TOOLS tools from real Argentic messages published on its bus (heartbeats, REGISTER_TOOL,
TOOL_REGISTERED). The client is a process of its own with one keep-alive connection per
appliance; per round it times REQUESTS requests of each path on each appliance, alternating,
so drift on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import zmq

from argentic_edge.app import Edge
from argentic_edge.bus.reader import WINDOW
from argentic_edge.config import parse_config
from argentic_edge.discovery.record import Peer, node_id
from tests.support.brokers import free_port
from tests.support.config import config_document

PEERS = 100
AGENTS = 1000
TOOLS = 1000
PATHS = ("/api/status", "/", "/metrics")
TOKEN = "web-bench-token"
CHUNK = 50  # messages published before waiting for the agents service to catch up
ATTEMPTS = 10  # sends of one chunk before the fill gives up


def edge_config(name: str, data: Path, web_port: int) -> dict[str, Any]:
    return config_document(
        data / name,
        node_name=name,
        discovery={
            "enabled": True,
            "max_peers": 2 * PEERS,
            "federation": {"export_port": free_port()},
        },
        web={"enabled": True, "host": "127.0.0.1", "port": web_port, "api_token": TOKEN},
    )


def fill_peers(edge: Edge) -> None:
    table = edge.services["peers"].table  # type: ignore[attr-defined]
    now = time.time()
    for index in range(PEERS):
        public, _secret = zmq.curve_keypair()
        curve = public.decode()
        peer = Peer(
            id=node_id(curve),
            name=f"peer-{index:03d}",
            addresses=(f"10.78.{index // 250}.{index % 250 + 1}",),
            pub=5555,
            sub=5556,
            fed=5557,
            web=8099,
            curve=curve,
            tls="ab" * 32,
            version="bench",
            first_seen=now,
            last_seen=now,
        )
        if table.upsert(peer) is None:
            raise RuntimeError("the peer table refused a synthetic peer")


def messages() -> list[tuple[str, dict[str, Any]]]:
    """What AGENTS agents and TOOLS tools send: a heartbeat each, a registration and its
    confirmation per tool, as Argentic's own messages."""

    def envelope(kind: str, source: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "source": source,
            "timestamp": time.time(),
            "message_id": str(uuid.uuid4()),
            **fields,
        }

    found = [(f"_ping/agent-{i:04d}", envelope("INFO", f"agent-{i:04d}")) for i in range(AGENTS)]
    for i in range(TOOLS):
        name = f"tool-{i:04d}"
        found.append(
            (
                "agent/tools/register",
                envelope(
                    "REGISTER_TOOL",
                    f"tool-process-{i:04d}",
                    tool_name=name,
                    tool_manual=f"does thing {i}",
                    tool_api='{"type": "object"}',
                ),
            )
        )
        found.append(
            (
                "agent/status/info",
                envelope(
                    "TOOL_REGISTERED",
                    f"agent-{i % AGENTS:04d}",
                    tool_name=name,
                    tool_id=str(uuid.uuid4()),
                ),
            )
        )
    return found


async def fill_agents(edge: Edge) -> int:
    """Publish on the bus in chunks, each confirmed by the service, so no high-water mark
    drops any; returns the number of messages the service read."""
    agents = edge.services["agents"]
    endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.connect(endpoint)
    try:
        probe = b'_ping/bench-probe {"type": "INFO", "source": "bench-probe"}'
        deadline = time.monotonic() + 10
        while agents.registry.messages == 0:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise RuntimeError("the agents service never saw the bus")
            socket.send(probe)
            await asyncio.sleep(0.02)
        batch = messages()
        for start in range(0, len(batch), CHUNK):
            await send_chunk(agents, socket, batch[start : start + CHUNK])
        return agents.registry.messages  # type: ignore[attr-defined]
    finally:
        socket.close(linger=0)
        context.term()


async def send_chunk(agents: Any, socket: zmq.Socket[Any], chunk: list[tuple[str, Any]]) -> None:
    """One chunk, read whole by the agents service. The service reads on a small CPU budget
    and discards a backlog it fell behind on (counted as skipped), so a chunk it did not take
    is sent again once its budget window has passed."""
    for _attempt in range(ATTEMPTS):
        target = agents.registry.messages + len(chunk)
        for topic, document in chunk:
            socket.send(topic.encode() + b" " + json.dumps(document).encode())
        try:
            await agents.wait_until(lambda registry, goal=target: registry.messages >= goal, 2.0)
            return
        except TimeoutError:
            await asyncio.sleep(WINDOW)  # the reader's budget is counted per window
    raise RuntimeError(f"the agents service did not take a chunk in {ATTEMPTS} attempts")


async def ask(client: asyncio.subprocess.Process, port: int, path: str, count: int) -> list[float]:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(f"{port} {path} {count}\n".encode())
    await client.stdin.drain()
    answer = json.loads(await asyncio.wait_for(client.stdout.readline(), 120))
    if answer.get("error"):
        raise RuntimeError(f"GET {path}: {answer['error']}")
    return answer["ms"]


async def measure(rounds: int, requests: int) -> dict[str, Any]:
    ports = {"empty": free_port(), "full": free_port()}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        async with AsyncExitStack() as stack:
            edges = {
                name: await stack.enter_async_context(
                    Edge(parse_config(edge_config(name, Path(tmp), port), env={}))
                )
                for name, port in ports.items()
            }
            fill_peers(edges["full"])
            read = await fill_agents(edges["full"])
            status = edges["full"].status()
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.web_probe",
                "client",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                samples: dict[str, list[float]] = {}
                for _ in range(rounds):
                    for path in PATHS:
                        for name, port in ports.items():
                            times = await ask(client, port, path, requests)
                            samples.setdefault(f"{name} {path}", []).extend(times)
            finally:
                assert client.stdin is not None
                client.stdin.close()
                await client.wait()
    return {
        "samples": samples,
        "peers": len(status["peers"]["peers"]),
        "agents": len(status["agents"]["agents"]),
        "tools": len(status["agents"]["tools"]),
        "messages": read,
    }


def client() -> None:
    """Serve timing requests from stdin: ``PORT PATH COUNT`` -> {"ms": [...]}."""
    connections: dict[int, http.client.HTTPConnection] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for line in sys.stdin:
        port_text, path, count_text = line.split()
        port = int(port_text)
        connection = connections.setdefault(
            port, http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        )
        times = []
        error = None
        for _ in range(int(count_text)):
            started = time.perf_counter()
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            times.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                error = f"status {answer.status}"
                break
        sys.stdout.write(json.dumps({"ms": times, "error": error}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["client"]:
        client()
    else:
        result = asyncio.run(measure(int(sys.argv[1]), int(sys.argv[2])))
        sys.stdout.write(json.dumps(result) + "\n")
