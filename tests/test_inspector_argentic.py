"""The inspector reading real Argentic traffic: the PyPI ``argentic`` 0.16.6 package publishes
heartbeats, registrations, tasks, results, errors and cancels on the appliance's bus over real
ZeroMQ, and the API shows the pairing, latencies and diagnoses. The two Argentic behaviours the
pages state are checked here against the package itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from argentic.core.messager.drivers.configs import ZeroMQDriverConfig
from argentic.core.messager.drivers.ZeroMQDriver import ZeroMQDriver
from argentic.core.protocol.message import InfoMessage
from argentic.core.protocol.task import TaskErrorMessage, TaskMessage, TaskResultMessage, TaskStatus
from argentic.core.protocol.tool import (
    RegisterToolMessage,
    ToolCancelMessage,
    ToolRegisteredMessage,
    ToolSafetyMetadata,
    ToolSpec,
)

from argentic_edge.app import Edge
from argentic_edge.client.bus import connect_and_wait
from argentic_edge.inspector import diagnostics, tasks, tools
from argentic_edge.inspector.diagnostics import RESULTS_ARE_TASKS, ZMQ_DRIVER_REFUSES_SPACES
from tests.support.config import TOKEN
from tests.support.web import Recorder, running_edge, web_client, web_document

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_argentic_sends_results_and_errors_as_type_task() -> None:
    """What RESULTS_ARE_TASKS tells the user, checked against the package."""
    result = TaskResultMessage(task_id="t", tool_id="x", tool_name="n", status=TaskStatus.SUCCESS)
    error = TaskErrorMessage(task_id="t", tool_id="x", tool_name="n", error="e")
    assert json.loads(result.model_dump_json())["type"] == "TASK"
    assert json.loads(error.model_dump_json())["type"] == "TASK"
    assert json.loads(error.model_dump_json())["status"] == "error"
    assert "type TASK and a status" in RESULTS_ARE_TASKS


async def test_argentic_zeromq_driver_refuses_a_topic_with_a_space() -> None:
    """What ZMQ_DRIVER_REFUSES_SPACES tells the user, checked against the package."""
    driver = ZeroMQDriver(
        ZeroMQDriverConfig(url="127.0.0.1", port=1, backend_port=2, start_proxy=False)
    )
    await driver.connect()
    try:
        with pytest.raises(ValueError, match="contains spaces"):
            await driver.publish("my topic", InfoMessage(source="x"))
    finally:
        await driver.disconnect()
    assert "refuses to publish to a topic with a space" in ZMQ_DRIVER_REFUSES_SPACES


@pytest.fixture
async def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Edge]:
    # Thresholds of minutes in production, shortened so a test sees them pass.
    monkeypatch.setattr(diagnostics, "CONFIRM_WAIT", 1.0)
    monkeypatch.setattr(tasks, "UNANSWERED_AFTER", 1.5)
    monkeypatch.setattr(tools, "MIN_SILENCE", 1.0)
    document = web_document(tmp_path, web_options={"enabled": False})
    async with running_edge(tmp_path, document) as running:
        yield running


@pytest.fixture
async def driver(edge: Edge) -> AsyncIterator[ZeroMQDriver]:
    messaging = edge.config.messaging
    config = ZeroMQDriverConfig(
        url="127.0.0.1", port=messaging.port, backend_port=messaging.backend_port, start_proxy=False
    )
    argentic = ZeroMQDriver(config)
    await argentic.connect()
    yield argentic
    await argentic.disconnect()


async def get(client: Recorder, path: str) -> Any:
    status, _, body = await client.request("GET", path, headers=BEARER)
    assert status == 200, body
    return json.loads(body)


async def until(client: Recorder, path: str, check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        document = await get(client, path)
        if check(document):
            return document
        assert time.monotonic() < deadline, f"{path} never satisfied the check: {document}"
        await asyncio.sleep(0.1)


async def heartbeat_until_watched(client: Recorder, driver: ZeroMQDriver, client_id: str) -> None:
    """Heartbeats until the inspector saw one: its subscription has reached the proxy."""
    await get(client, "api/inspector/topics")  # a read starts the watching
    for _ in range(100):
        await driver.publish(f"_ping/{client_id}", InfoMessage(source=client_id))
        topics = await get(client, "api/inspector/topics?filter=_ping/%23")
        if topics["total"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the inspector never saw a heartbeat")


def send_raw(edge: Edge, frame: bytes) -> None:
    """A frame no Argentic client would send (raw bytes), once a subscriber is there."""
    context = zmq.Context()
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 2000)
    try:
        connect_and_wait(socket, f"tcp://127.0.0.1:{edge.config.messaging.port}", 5.0)
        assert socket.poll(5000), "no subscription reached the publisher"
        socket.send(frame)
    finally:
        socket.close()
        context.term()


async def test_tasks_tools_and_diagnoses_from_real_argentic_traffic(
    edge: Edge, driver: ZeroMQDriver
) -> None:
    async with web_client(edge) as client:
        await heartbeat_until_watched(client, driver, "weather-tool")
        for _ in range(4):  # a rhythm of 0.2 s, then silence: "stopped"
            await asyncio.sleep(0.2)
            await driver.publish("_ping/weather-tool", InfoMessage(source="weather-tool"))

        spec = ToolSpec(
            name="weather",
            description="Forecast for a city",
            input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            safety=ToolSafetyMetadata(dangerous=True, requires_approval=True),
            version="1.2",
        )
        await driver.publish(
            "agent/tools/register",
            RegisterToolMessage(tool_name="weather", tool_spec=spec, source="weather-tool"),
        )
        await driver.publish(
            "agent/tools/register", RegisterToolMessage(tool_name="orphan", source="lonely-tool")
        )
        await driver.publish(
            "agent/status/info",
            ToolRegisteredMessage(tool_id="t-1", tool_name="weather", source="planner"),
        )

        call = {"tool_id": "t-1", "tool_name": "weather", "source": "planner"}
        reply = {**call, "source": "weather-tool"}
        sent = time.monotonic()
        await driver.publish(
            "agent/tools/call/t-1", TaskMessage(task_id="a1", arguments={"city": "Oslo"}, **call)
        )
        await asyncio.sleep(0.3)
        await driver.publish(
            "agent/tools/response/t-1",
            TaskResultMessage(task_id="a1", status=TaskStatus.SUCCESS, result="sunny", **reply),
        )
        answered = time.monotonic()
        await driver.publish(
            "agent/tools/call/t-1", TaskMessage(task_id="a2", arguments={}, **call)
        )
        await driver.publish(
            "agent/tools/response/t-1",
            TaskErrorMessage(task_id="a2", status=TaskStatus.FAILED, error="boom", **reply),
        )
        await driver.publish(
            "agent/tools/call/t-1", TaskMessage(task_id="a3", timeout_seconds=30, **call)
        )
        await driver.publish(
            "agent/tools/cancel/t-1", ToolCancelMessage(task_id="a3", reason="user gave up")
        )
        await driver.publish("agent/tools/call/t-1", TaskMessage(task_id="a4", **call))
        await asyncio.get_running_loop().run_in_executor(None, send_raw, edge, b"sensors/raw hello")
        await asyncio.get_running_loop().run_in_executor(
            None, send_raw, edge, b'my topic {"type": "INFO"}'
        )

        tasks_doc = await until(client, "api/inspector/tasks", lambda d: d["total"] == 4)
        by_id = {t["task_id"]: t for t in tasks_doc["tasks"]}
        assert [t["task_id"] for t in tasks_doc["tasks"]] == ["a4", "a3", "a2", "a1"]
        first = by_id["a1"]
        assert (first["state"], first["outcome"], first["caller"], first["responder"]) == (
            "answered",
            "success",
            "planner",
            "weather-tool",
        )
        assert first["tool"] == "weather" and first["tool_id"] == "t-1"
        assert 0.3 <= first["latency"] <= answered - sent + 0.5
        assert (by_id["a2"]["state"], by_id["a2"]["error"]) == ("failed", "boom")
        assert (by_id["a3"]["state"], by_id["a3"]["cancel_reason"]) == ("cancelled", "user gave up")
        assert by_id["a4"]["state"] == "pending" and by_id["a4"]["latency"] is None
        per_tool = tasks_doc["per_tool"]
        assert [(r["tool"], r["samples"]) for r in per_tool] == [("weather", 2)]
        assert per_tool[0]["max"] == pytest.approx(first["latency"], abs=1e-6)

        tools_doc = await get(client, "api/inspector/tools")
        named = {t["name"]: t for t in tools_doc["tools"]}
        weather = named["weather"]
        assert (weather["state"], weather["providers"], weather["agent"], weather["tool_ids"]) == (
            "registered",
            ["weather-tool"],
            "planner",
            ["t-1"],
        )
        assert weather["spec"] == "tool_spec" and weather["description"] == "Forecast for a city"
        assert weather["dangerous"] is True and weather["requires_approval"] is True
        assert weather["version"] == "1.2"
        assert weather["input_schema"]["properties"]["city"] == {"type": "string"}
        assert named["orphan"]["state"] == "requested" and named["orphan"]["spec"] == "tool_spec"

        def complete(d: dict[str, Any]) -> bool:
            kinds = {x["kind"] for x in d["diagnoses"]}
            return {
                "registration_unconfirmed",
                "task_unanswered",
                "heartbeat_stopped",
                "invalid_envelope",
                "topic_with_space",
            } <= kinds

        report = await until(client, "api/inspector/diagnostics", complete)
        found = {(d["kind"], d["subject"]): d for d in report["diagnoses"]}
        assert set(found) == {
            ("registration_unconfirmed", "orphan"),
            ("task_unanswered", "a4"),
            ("heartbeat_stopped", "weather-tool"),
            ("invalid_envelope", "sensors/raw"),
            ("topic_with_space", "my"),
        }
        assert (
            "lonely-tool sent REGISTER_TOOL on agent/tools/register"
            in found[("registration_unconfirmed", "orphan")]["cause"]
        )
        assert "planner called weather" in found[("task_unanswered", "a4")]["cause"]
        assert ZMQ_DRIVER_REFUSES_SPACES in found[("topic_with_space", "my")]["cause"]
        assert found[("invalid_envelope", "sensors/raw")]["cause"] == "1 message(s): not JSON"
        assert report["notes"] == [RESULTS_ARE_TASKS]

        topics = await get(client, "api/inspector/topics?filter=agent/tools/%23")
        rows = {row["topic"]: row for row in topics["topics"]}
        assert rows["agent/tools/call/t-1"]["count"] == 4
        assert rows["agent/tools/response/t-1"]["count"] == 2
        assert rows["agent/tools/cancel/t-1"]["type"] == "TOOL_CANCEL"
        detail = await get(client, "api/inspector/topics?topic=agent/tools/response/t-1")
        assert detail["envelope"]["kind"] == "error" and detail["envelope"]["status"] == "failed"
        assert json.loads(detail["payload"])["error"] == "boom"


async def test_nobody_watching_means_no_bus_socket(
    edge: Edge, driver: ZeroMQDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argentic_edge.inspector import watcher

    inspector = edge.inspector()
    assert inspector is not None
    assert inspector.status().watching is False
    monkeypatch.setattr(watcher, "LEASE", 0.5)
    async with web_client(edge) as client:
        await heartbeat_until_watched(client, driver, "someone")
        assert inspector.status().watching is True
        deadline = time.monotonic() + 5
        while inspector.status().watching:
            assert time.monotonic() < deadline, "the inspector kept reading with nobody watching"
            await asyncio.sleep(0.1)
        seen = inspector.messages
        await driver.publish("_ping/someone", InfoMessage(source="someone"))
        await asyncio.sleep(0.3)
        assert inspector.messages == seen


async def test_the_stream_carries_heartbeats_and_ends_after_fractional_seconds(
    edge: Edge, driver: ZeroMQDriver
) -> None:
    async def heartbeats() -> None:
        while True:  # until the stream's subscription has reached the proxy, and after
            await driver.publish("_ping/streamed", InfoMessage(source="streamed"))
            await asyncio.sleep(0.1)

    async with web_client(edge) as client:
        sending = asyncio.create_task(heartbeats())
        started = time.monotonic()
        try:
            async with client.client.get(
                "/api/inspector/stream?filter=_ping/%23&seconds=1.5", headers=BEARER
            ) as response:
                assert response.status == 200
                body = (await response.read()).decode()
        finally:
            sending.cancel()
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 4.0, elapsed
        assert "event: reader" in body
        messages = [
            json.loads(line[len("data: ") :])
            for event in body.split("\n\n")
            if event.startswith("event: message")
            for line in event.splitlines()
            if line.startswith("data: ")
        ]
        assert messages and {m["topic"] for m in messages} == {"_ping/streamed"}
        for seconds in ("0.05", "nan", "3600.5", "soon"):
            status, _, text = await client.request(
                "GET", f"/api/inspector/stream?seconds={seconds}", headers=BEARER
            )
            assert status == 400 and "seconds: expected" in text, (seconds, text)
