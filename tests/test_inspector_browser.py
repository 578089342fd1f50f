"""The inspector's pages in a real headless Chromium against a running appliance with a real
Mosquitto uplink: every page renders with data, the map shows the uplink, the charts move, a
publish from the page arrives on the bus, and a recording started on the page downloads and
replays. Screenshots (also 390 px wide) go to test-artifacts/; no console errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import zmq

from argentic_edge.app import Edge
from argentic_edge.client.bus import Subscriber, publish
from argentic_edge.inspector import history
from argentic_edge.inspector.recording import load
from argentic_edge.topics import TopicFilter
from tests.support.appliance import command, environment
from tests.support.brokers import Mosquitto
from tests.support.browser import Browser
from tests.support.browser_tests import ARTIFACTS, BROWSER_MARKS, bridge_to, log_in, text_of
from tests.support.config import write_yaml
from tests.support.web import running_edge, web_document

pytestmark = BROWSER_MARKS


async def send(edge: Edge, topic: str, payload: dict[str, object]) -> None:
    endpoint = f"tcp://127.0.0.1:{edge.config.messaging.port}"
    context = zmq.Context()
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: publish(context, endpoint, topic, json.dumps(payload).encode(), wait=2.0)
        )
    finally:
        context.term()


async def shots(browser: Browser, name: str) -> None:
    await browser.screenshot(ARTIFACTS / f"inspector-{name}.png", height=1200)
    await browser.screenshot(
        ARTIFACTS / f"inspector-{name}-phone.png", width=390, height=844, mobile=True
    )
    width = await browser.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{name} is {width} px wide at 390 px"
    await browser.send("Emulation.clearDeviceMetricsOverride")


async def test_the_inspector_pages(
    tmp_path: Path, browser: Browser, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "INTERVAL", 0.5)  # charts that move within a test
    document = web_document(
        tmp_path,
        bridge=bridge_to(mosquitto.port),
    )
    async with running_edge(tmp_path, document) as edge:
        await log_in(browser, document)

        await browser.submit_and_load("document.getElementById('nav-overview').click()")
        await browser.wait_for("document.querySelector('#map g.uplink[data-name=\"mqtt\"]')")
        await send(edge, "_ping/kitchen-agent", {"type": "INFO", "source": "kitchen-agent"})
        await browser.wait_for(
            "document.querySelector('#map g.agent[data-name=\"kitchen-agent\"]')", timeout=15
        )
        assert (
            await browser.evaluate("document.querySelector('#map g.self text').textContent")
            == "test-node"
        )
        assert "connected" in await browser.evaluate(text_of("#map"))
        points = await browser.wait_for(
            "Number((document.querySelector('figure.chart') || {dataset: {}}).dataset.points) >= 2"
            " && Number(document.querySelector('figure.chart').dataset.points)"
        )
        for index in range(10):
            await send(edge, f"load/{index}", {"type": "DATA"})
        await browser.wait_for(
            f"Number(document.querySelector('figure.chart').dataset.points) > {points}"
        )
        await browser.wait_for(
            "Number(document.querySelector('figure.chart').dataset.peak) >= 5", timeout=15
        )
        charts = await browser.evaluate(
            "[...document.querySelectorAll('figure.chart')].map((f) => f.dataset.chart)"
        )
        assert charts == ["bus", "uplink mqtt", "drops"]
        connect = await browser.evaluate(text_of("#connect-yaml"))
        assert f"backend_port: {edge.config.messaging.backend_port}" in connect
        assert f"port: {edge.config.messaging.port}" in connect
        await shots(browser, "overview")

        await browser.submit_and_load("document.getElementById('nav-traffic').click()")
        await send(edge, "agent/status/info", {"type": "INFO", "source": "planner", "n": 1})
        button = '#tree button[data-topic="agent/status/info"]'
        await browser.wait_for(f"document.querySelector({json.dumps(button)})", timeout=15)
        await browser.evaluate(f"document.querySelector({json.dumps(button)}).click()")
        raw = await browser.wait_for(f"{text_of('#raw')}")
        assert json.loads(raw) == {"type": "INFO", "source": "planner", "n": 1}
        await send(edge, "agent/status/live", {"type": "INFO", "source": "planner"})
        await browser.wait_for(f"{text_of('#messages')}.includes('agent/status/live')")

        loop = asyncio.get_running_loop()
        bus = zmq.Context()
        subscriber = Subscriber(
            bus, f"tcp://127.0.0.1:{edge.config.messaging.backend_port}", TopicFilter("from/page")
        )
        try:
            received = loop.run_in_executor(
                None, lambda: next(subscriber.messages(timeout=10), None)
            )
            await asyncio.sleep(0.3)
            await browser.evaluate(
                "document.getElementById('publish-topic').value = 'from/page';"
                'document.getElementById(\'publish-payload\').value = \'{"type": "INFO", "x": 1}\';'
                "document.querySelector('#publish-form button[type=submit]').click()"
            )
            message = await received
            assert message is not None, await browser.evaluate(text_of("#publish-result"))
            assert (message.topic, message.payload) == ("from/page", b'{"type": "INFO", "x": 1}')
            await browser.wait_for(f"{text_of('#publish-result')}.startsWith('published')")

            await browser.evaluate(
                "document.getElementById('record-filter').value = 'rec/#';"
                "document.getElementById('record-start').click()"
            )
            await browser.wait_for(f"{text_of('#record-state')}.startsWith('recording rec/#')")
            for index in range(3):
                await send(edge, f"rec/{index}", {"type": "DATA", "i": index})
                await asyncio.sleep(0.2)
            await browser.wait_for(f"{text_of('#record-state')}.includes(': 3 messages')")
            await browser.evaluate("document.getElementById('record-stop').click()")
            await browser.wait_for(f"{text_of('#record-state')}.startsWith('stopped')")
            await shots(browser, "traffic")
            downloaded = await browser.evaluate(
                "fetch(document.getElementById('record-download').href).then((r) => r.text())"
            )
        finally:
            subscriber.close()
        recording = tmp_path / "downloaded.jsonl"
        recording.write_text(downloaded)
        assert [m.topic for m in load(recording)] == ["rec/0", "rec/1", "rec/2"]
        replay_to = Subscriber(
            bus, f"tcp://127.0.0.1:{edge.config.messaging.backend_port}", TopicFilter("rec/#")
        )
        try:
            collected = loop.run_in_executor(
                None, lambda: [m.payload for m in replay_to.messages(timeout=5)][:3]
            )
            await asyncio.sleep(0.3)
            config = write_yaml(tmp_path / "cli.yaml", document)
            replay = await asyncio.create_subprocess_exec(
                *command("replay", str(recording), "--config", str(config)), env=environment()
            )
            assert await replay.wait() == 0
            assert await collected == [
                json.dumps({"type": "DATA", "i": i}).encode() for i in range(3)
            ]
        finally:
            replay_to.close()
            bus.term()

        call = {"tool_id": "t-9", "tool_name": "lights", "source": "planner"}
        await send(
            edge,
            "agent/tools/register",
            {
                "type": "REGISTER_TOOL",
                "tool_name": "lights",
                "source": "light-tool",
                "tool_spec": {
                    "name": "lights",
                    "description": "Switch lights",
                    "safety": {"dangerous": True},
                },
            },
        )
        await send(edge, "agent/tools/call/t-9", {"type": "TASK", "task_id": "k1", **call})
        await send(
            edge,
            "agent/tools/response/t-9",
            {"type": "TASK", "task_id": "k1", "status": "success", **call},
        )
        await send(edge, "agent/tools/call/t-9", {"type": "TASK", "task_id": "k2", **call})

        await browser.submit_and_load("document.getElementById('nav-tasks').click()")
        rows = (
            "[...document.querySelectorAll('#tasks tbody tr')].map((r) => r.cells[0].textContent)"
        )
        await browser.wait_for(f"{rows}.includes('k1') && {rows}.includes('k2')")
        assert "pending" in await browser.evaluate(text_of("#tasks"))
        assert "lights" in await browser.evaluate(text_of("#per-tool"))
        await shots(browser, "tasks")

        await browser.submit_and_load("document.getElementById('nav-tools').click()")
        await browser.wait_for(f"{text_of('#tools')}.includes('Switch lights · dangerous')")
        assert "light-tool" in await browser.evaluate(text_of("#tools"))
        await browser.wait_for(f"{text_of('#clients')}.includes('kitchen-agent')")
        await shots(browser, "tools")
