"""The agents service: who is seen on the bus, read from real Argentic-shaped traffic."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import zmq

from argentic_edge.app import Edge
from argentic_edge.client.bus import connect_and_wait
from argentic_edge.config import parse_config
from argentic_edge.inspector.agents import AgentRegistry, AgentsService, Malformed
from argentic_edge.topics import encode_frame
from tests.support.config import config_document


def send_when_subscribed(
    context: zmq.Context, endpoint: str, frames: list[bytes], prefix: bytes
) -> None:
    """Publish ``frames`` in order on one socket once the subscription ``prefix`` has arrived."""
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 2000)
    try:
        connect_and_wait(socket, endpoint, 5.0)
        while socket.poll(5000):
            if socket.recv() == b"\x01" + prefix:
                break
        else:
            raise TimeoutError(f"no subscription to {prefix!r} reached the publisher")
        for frame in frames:
            socket.send(frame)
    finally:
        socket.close()


def message(kind: str, **fields: object) -> bytes:
    return json.dumps({"type": kind, "timestamp": 1.0, "message_id": "m", **fields}).encode()


def test_heartbeats_registrations_and_confirmations_build_one_picture() -> None:
    registry = AgentRegistry()
    registry.record("_ping/weather-tool", message("INFO", source="weather-tool"), 10.0)
    registry.record(
        "agent/tools/register",
        message(
            "REGISTER_TOOL",
            source="weather-tool",
            tool_name="weather",
            tool_manual="...",
            tool_api="{}",
        ),
        11.0,
    )
    registry.record(
        "agent/status/info",
        message("TOOL_REGISTERED", source="planner", tool_id="t-1", tool_name="weather"),
        12.0,
    )
    registry.record("_ping/weather-tool", message("INFO", source="weather-tool"), 13.0)
    snapshot = registry.snapshot(15.0)
    agents = {a["id"]: a for a in snapshot["agents"]}
    assert agents["weather-tool"]["heartbeats"] == 2
    assert agents["weather-tool"]["age"] == 2.0
    assert agents["planner"]["role"] == "agent"
    [tool] = snapshot["tools"]
    assert tool == {
        "name": "weather",
        "state": "registered",
        "provider": "weather-tool",
        "agent": "planner",
        "tool_id": "t-1",
        "topic": "agent/status/info",
        "last_seen": 12.0,
        "age": 3.0,
    }
    registry.record("agent/tools/register", message("UNREGISTER_TOOL", tool_id="t-1"), 16.0)
    assert registry.snapshot(16.0)["tools"][0]["state"] == "unregistered"


def test_guide_topics_count_and_other_traffic_under_the_prefixes_does_not() -> None:
    registry = AgentRegistry()
    assert registry.record(
        "tools/search/register", message("REGISTER_TOOL", tool_name="search"), 1.0
    )
    assert not registry.record("tools/search/call/123", message("TASK"), 1.0)
    assert not registry.record("agent/tools/registered", message("INFO"), 1.0)
    assert [t["name"] for t in registry.snapshot(2.0)["tools"]] == ["search"]
    assert registry.messages == 1


@pytest.mark.parametrize(
    "topic,payload",
    [
        ("_ping/x", b"not json"),
        ("_ping/x", b"[1, 2]"),
        ("_ping/x", b'{"no": "type"}'),
        ("_ping/" + "x" * 500, message("INFO")),
        ("agent/tools/register", message("REGISTER_TOOL", tool_name=42)),
        ("agent/status/info", message("TOOL_REGISTERED", tool_name="w")),
    ],
)
def test_malformed_messages_are_counted_and_change_nothing(topic: str, payload: bytes) -> None:
    registry = AgentRegistry()
    with pytest.raises(Malformed):
        registry.record(topic, payload, 1.0)
    assert registry.malformed == 1
    assert registry.snapshot(1.0)["agents"] == [] and registry.snapshot(1.0)["tools"] == []


def test_the_tables_are_bounded_and_forget_the_least_recently_seen() -> None:
    registry = AgentRegistry(max_agents=3, max_tools=2)
    for index in range(5):
        registry.record(f"_ping/a{index}", message("INFO"), float(index))
    registry.record("_ping/a2", message("INFO"), 9.0)  # seen again: now the most recent
    for index in range(3):
        registry.record(
            "agent/tools/register", message("REGISTER_TOOL", tool_name=f"t{index}"), float(index)
        )
    snapshot = registry.snapshot(10.0)
    assert [a["id"] for a in snapshot["agents"]] == ["a2", "a4", "a3"]
    assert [t["name"] for t in snapshot["tools"]] == ["t2", "t1"]
    assert registry.evicted == 3


async def test_the_service_reads_the_real_bus_through_narrow_subscriptions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(config_document(tmp_path))
    context = zmq.Context()
    async with Edge(config) as edge:
        service = edge.services["agents"]
        assert isinstance(service, AgentsService)
        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
        frames = [
            # Traffic the service must not pay for: an agent's tool calls.
            *(encode_frame(f"agent/tools/call/t-{i}", message("TASK")) for i in range(50)),
            encode_frame("_ping/broken", b"{oops"),
            encode_frame("_ping/researcher", message("INFO", source="researcher")),
            encode_frame(
                "agent/tools/register",
                message("REGISTER_TOOL", tool_name="search", source="researcher"),
            ),
        ]
        await asyncio.get_running_loop().run_in_executor(
            None, send_when_subscribed, context, endpoint, frames, b"_ping/"
        )
        await service.wait_until(lambda r: "search" in r.tools and "researcher" in r.agents, 5.0)
        status = edge.status()["agents"]
        assert status["messages"] == 3  # the ping, the broken ping, the registration
        assert status["malformed"] == 1
        assert [a["id"] for a in status["agents"]] == ["researcher"]
        assert status["tools"][0]["provider"] == "researcher"
        assert edge.health() == (True, [])
        assert (
            sum(
                "malformed" in r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING
            )
            == 1
        )
    context.term()


async def test_a_multipart_message_is_discarded_whole_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Argentic writes one frame per message; a continuation part would otherwise pass as a
    message of its own, on a topic libzmq never filtered (it matches the first part only)."""
    config = parse_config(config_document(tmp_path))
    context = zmq.Context()
    async with Edge(config) as edge:
        service = edge.services["agents"]
        assert isinstance(service, AgentsService)
        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]

        def send() -> None:
            socket = context.socket(zmq.XPUB)
            socket.setsockopt(zmq.LINGER, 2000)
            try:
                connect_and_wait(socket, endpoint, 5.0)
                while socket.poll(5000) and socket.recv() != b"\x01_ping/":
                    pass
                for index in range(2):
                    socket.send_multipart(
                        [
                            encode_frame(f"_ping/first{index}", message("INFO")),
                            encode_frame("_ping/smuggled", message("INFO")),
                        ]
                    )
                socket.send(encode_frame("_ping/after", message("INFO")))
            finally:
                socket.close()

        await asyncio.get_running_loop().run_in_executor(None, send)
        await service.wait_until(lambda r: "after" in r.agents, 5.0)
        status = edge.status()["agents"]
        assert [a["id"] for a in status["agents"]] == ["after"]
        assert status["reader"]["multipart"] == 2
    context.term()
    assert (
        sum("multipart" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        == 1
    )
