"""The page in a real headless Chromium: log in, watch live counters, edit the configuration,
and the same page under a Home Assistant ingress prefix."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import zmq
from aiohttp.test_utils import TestServer

from argentic_edge.client.bus import publish
from argentic_edge.web import create_app
from tests.support.bridge import MqttClient
from tests.support.brokers import Mosquitto, free_port
from tests.support.browser import Browser
from tests.support.browser_tests import (
    ARTIFACTS,
    BROWSER_MARKS,
    bridge_to,
    log_in,
    page_url,
    text_of,
)
from tests.support.config import PASSWORD
from tests.support.flood import FLOOD_LIMIT, Flood
from tests.support.web import SUPERVISOR, ingress_proxy, running_edge, web_document

pytestmark = BROWSER_MARKS


async def test_log_in_watch_the_bus_and_change_the_configuration(
    tmp_path: Path, browser: Browser
) -> None:
    document = web_document(tmp_path)
    base = page_url(document)
    async with running_edge(tmp_path, document) as edge:
        await browser.navigate(base)
        assert await browser.evaluate("location.pathname") == "/login"
        await browser.log_in(PASSWORD)
        assert await browser.evaluate("location.pathname") == "/"
        await browser.wait_for("document.getElementById('live').classList.contains('on')")
        published = '[data-counter="frontend.messages_in"]'
        assert await browser.evaluate(text_of(published)) == "0"

        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
        context = zmq.Context()
        for _ in range(5):
            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: publish(
                    context,
                    endpoint,
                    "_ping/kitchen-agent",
                    b'{"type": "INFO", "source": "kitchen-agent"}',
                    wait=2.0,
                ),
            )
        context.term()
        await browser.wait_for(f"{text_of(published)} === '5'")
        await browser.wait_for(f"{text_of('#agents table.agents')}.includes('kitchen-agent')")
        assert await browser.evaluate(text_of("#uplinks .body")) == "disabled"
        assert await browser.evaluate(text_of("#peers .body")) == "discovery disabled"
        await browser.screenshot(ARTIFACTS / "web-status.png")
        await browser.screenshot(
            ARTIFACTS / "web-status-phone.png", width=390, height=844, mobile=True
        )

        await browser.submit_and_load("document.getElementById('nav-config').click()")
        field = "[data-where='web.port']"
        await browser.wait_for(f'document.querySelector("{field} input")')
        file_before = (tmp_path / "argentic-edge.yaml").read_text()
        await browser.evaluate(
            f"document.querySelector(\"{field} input\").value = '70000';"
            "document.getElementById('config-save').click()"
        )
        error = await browser.wait_for(f"{text_of(field + ' .error')}")
        assert error.startswith("expected a TCP port from 1 to 65535")
        assert (tmp_path / "argentic-edge.yaml").read_text() == file_before

        port = document["web"]["port"]  # type: ignore[index]
        await browser.evaluate(
            f"document.querySelector(\"{field} input\").value = '{port}';"
            "document.querySelector(\"[data-where='node_name'] input\").value = 'renamed-node';"
            "document.getElementById('config-save').click()"
        )
        result = await browser.wait_for(
            f"{text_of('#config-save-result')}.startsWith('Saved') && "
            f"{text_of('#config-save-result')}"
        )
        assert (
            result == "Saved and applied (restarted: nothing needed a restart)."
        )  # the pages read the name live
        assert edge.config.node_name == "renamed-node"
        await browser.screenshot(ARTIFACTS / "web-config.png", height=1400)

        await browser.submit_and_load("document.getElementById('nav-status').click()")
        await browser.wait_for(f"{text_of('#node-name')} === 'renamed-node'")
        assert edge.status()["node"]["name"] == "renamed-node"


async def test_the_page_works_under_an_ingress_prefix(tmp_path: Path, browser: Browser) -> None:
    prefix = "/api/hassio_ingress/Xy12abcDEF"
    document = web_document(
        tmp_path, web_options={"enabled": False, "ingress": True, "password": None}
    )
    async with running_edge(tmp_path, document) as edge:
        appliance = TestServer(create_app(edge, supervisor_address=SUPERVISOR), host="127.0.0.1")
        await appliance.start_server()
        proxy = TestServer(
            ingress_proxy(str(appliance.make_url("")), prefix, SUPERVISOR), host="127.0.0.1"
        )
        await proxy.start_server()
        try:
            await browser.navigate(str(proxy.make_url(prefix + "/")))
            await browser.wait_for("document.getElementById('live').classList.contains('on')")
            assert await browser.evaluate(text_of("#node-name")) == "test-node"
            assert await browser.evaluate("document.querySelector('form.logout')") is None
            await browser.submit_and_load("document.getElementById('nav-config').click()")
            assert await browser.evaluate("location.pathname") == prefix + "/config"
            await browser.wait_for("document.querySelector(\"[data-where='web.port'] input\")")
            await browser.screenshot(ARTIFACTS / "web-ingress-config.png")
            # The appliance itself, reached from anywhere but the Supervisor, refuses.
            await browser.navigate(str(appliance.make_url("/")))
            assert "Home Assistant" in await browser.evaluate("document.body.textContent")
        finally:
            await proxy.close()
            await appliance.close()


async def test_remove_from_home_assistant_before_uninstalling(
    tmp_path: Path, browser: Browser, mosquitto: Mosquitto
) -> None:
    """The add-on user's last step: the Home Assistant card's button clears the device's
    retained discovery messages on the broker."""
    document = web_document(
        tmp_path,
        bridge=bridge_to(mosquitto.port),
    )
    async with running_edge(tmp_path, document):
        await log_in(browser, document)
        await browser.wait_for(
            "!document.getElementById('homeassistant').hidden && "
            f"{text_of('#homeassistant .body')}.includes('announcements1')"
        )
        bridge = await browser.evaluate(text_of("#uplink-mqtt .body"))
        assert "stateconnected" in bridge and "[object" not in bridge, bridge
        assert "buffered0 of 10,000 msgs, 0 B" in bridge, bridge
        assert await browser.evaluate(
            "[...document.querySelectorAll('#uplink-mqtt table.routes tbody tr')].map((r) => "
            "[...r.cells].map((c) => c.textContent))[0]"
        ) == ["agent/#", "both", "auto", "auto", "agent/#", "0 msgs", "0 msgs"]
        await browser.screenshot(ARTIFACTS / "web-status-bridge.png")
        async with MqttClient(mosquitto.port) as home_assistant:
            await home_assistant.subscribe("homeassistant/#")
            announced = {item.topic for item in await home_assistant.quiet(0.5) if item.retain}
        assert len(announced) == 7, announced  # five sensors, the uplink's, the button

        await browser.evaluate(
            "[...document.querySelectorAll('#homeassistant button')]"
            ".find((b) => b.textContent === 'Remove from Home Assistant')"
            ".click()"
        )
        # beside the button, and still there after the live updates that rewrite the status line
        await browser.wait_for(
            f"{text_of('#homeassistant .result')}.startsWith('removed from Home Assistant')"
        )
        await browser.wait_for("!document.querySelector('#homeassistant button')")
        assert (await browser.evaluate(text_of("#homeassistant .result"))).startswith(
            "removed from Home Assistant"
        )  # the card was drawn again (no button now), the outcome with it
        async with MqttClient(mosquitto.port) as home_assistant:
            await home_assistant.subscribe("homeassistant/#")
            assert [item.topic for item in await home_assistant.quiet(0.5) if item.retain] == []


async def test_the_page_says_when_a_bus_reader_samples_under_load(
    tmp_path: Path, browser: Browser
) -> None:
    document = web_document(tmp_path)
    async with running_edge(tmp_path, document) as edge:
        await log_in(browser, document)
        await browser.wait_for("document.getElementById('live').classList.contains('on')")
        endpoint = edge.services["bus"].bus.endpoints.publish  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        flood = await loop.run_in_executor(None, Flood(endpoint, "_ping/flooder").start)
        try:
            while flood.running and not edge.status()["agents"]["reader"]["skipped"]:
                await asyncio.sleep(0.05)
        finally:
            sent = await loop.run_in_executor(None, flood.stop)
        assert sent < FLOOD_LIMIT, "the registry never sampled under the flood"
        # The page is live: a document from before the first skip may say "0 skipped".
        shown = await browser.wait_for(
            f"/^bus reader: sampling under load: [1-9]/.test({text_of('#agents .body p.bad')})"
            f" && {text_of('#agents .body p.bad')}"
        )
        skipped = re.search(r"sampling under load: ([\d,]+) skipped", shown)
        assert skipped is not None and int(skipped[1].replace(",", "")) > 0, shown
        await browser.screenshot(ARTIFACTS / "web-status-sampling.png")


async def open_config(browser: Browser, document: dict[str, Any]) -> None:
    """Log in and open the configuration page at 1280 x 900, its form built."""
    await browser.viewport()
    await log_in(browser, document)
    await browser.navigate(page_url(document) + "config")
    await browser.wait_for("document.querySelector(\"[data-where='web.port'] input\")")


# Where a save's result shows, against its button, and what has the focus.
OUTCOME = """((form) => {
  const button = form.querySelector("button[type=submit]").getBoundingClientRect();
  const result = form.querySelector(".result").getBoundingClientRect();
  const focused = document.activeElement;
  const box = focused.getBoundingClientRect();
  return {result: form.querySelector(".result").textContent,
    gap: Math.abs(result.top - button.top), visible: result.top >= 0 && result.bottom <= innerHeight,
    focused: focused.closest(".field") ? focused.closest(".field").dataset.where
      : focused.matches("ul.problems") ? "problems" : focused.tagName,
    focusedVisible: box.top >= 0 && box.bottom <= innerHeight,
    problems: form.querySelector("ul.problems").textContent};
})(document.getElementById(%s))"""


async def test_a_save_shows_its_result_next_to_its_button_and_focuses_the_first_problem(
    tmp_path: Path, browser: Browser
) -> None:
    document = web_document(tmp_path)
    async with running_edge(tmp_path, document):
        await open_config(browser, document)
        await browser.evaluate(
            "document.getElementById('yaml-editor').open = true;"
            "document.getElementById('yaml-text').value = 'web: [unclosed\\n';"
            "document.getElementById('yaml-save').scrollIntoView({block: 'end'});"
            "document.getElementById('yaml-save').click()"
        )
        await browser.wait_for(f"{text_of('#yaml-save-result')}.startsWith('Not saved')")
        shown = await browser.evaluate(OUTCOME % json.dumps("yaml-form"))
        assert shown["result"] == "Not saved: the configuration has a problem.", shown
        assert shown["gap"] < 40 and shown["visible"], shown
        assert shown["focused"] == "problems" and shown["focusedVisible"], shown
        assert "is not valid YAML" in shown["problems"] and "null" not in shown["problems"]

        await browser.evaluate(
            "document.querySelector(\"[data-where='web.port'] input\").value = '70000';"
            "document.getElementById('config-save').scrollIntoView({block: 'end'});"
            "document.getElementById('config-save').click()"
        )
        await browser.wait_for(f"{text_of('#config-save-result')}.startsWith('Not saved')")
        shown = await browser.evaluate(OUTCOME % json.dumps("config-form"))
        assert shown["gap"] < 40, shown  # the result is where the button is ...
        assert shown["focused"] == "web.port" and shown["focusedVisible"], (
            shown
        )  # ... the field too
        assert "expected a TCP port from 1 to 65535 (got 70000)" in shown["problems"], shown
        await browser.screenshot(ARTIFACTS / "web-config-problem.png")


async def test_changing_the_web_port_from_the_page_goes_to_the_new_address(
    tmp_path: Path, browser: Browser
) -> None:
    document = web_document(tmp_path)
    port = free_port()
    async with running_edge(tmp_path, document) as edge:
        await open_config(browser, document)
        moved = browser.expect("Page.loadEventFired")
        await browser.evaluate(
            f"document.querySelector(\"[data-where='web.port'] input\").value = '{port}';"
            "document.getElementById('config-save').click()"
        )
        shown = await browser.wait_for(
            f"{text_of('#config-save-result')}.includes('opening it') && "
            f"{text_of('#config-save-result')}"
        )
        assert f"The page is now at http://127.0.0.1:{port}/config: opening it" in shown
        async with asyncio.timeout(15):
            await moved
        assert await browser.evaluate("location.href") == f"http://127.0.0.1:{port}/config"
        await browser.wait_for("document.querySelector(\"[data-where='web.port'] input\")")
        assert await browser.evaluate(
            "document.querySelector(\"[data-where='web.port'] input\").value"
        ) == str(port)
        assert edge.services["web"].port == port  # type: ignore[attr-defined]


async def test_the_home_assistant_card_stays_hidden_on_an_appliance_without_a_broker(
    tmp_path: Path, browser: Browser
) -> None:
    """Discovery is on, but no broker ever answered: there is no device in Home Assistant, so
    neither the card nor its button (which would answer 409) shows."""
    document = web_document(
        tmp_path,
        bridge=bridge_to(free_port()),
    )
    async with running_edge(tmp_path, document) as edge:
        assert edge.status()["homeassistant"]["enabled"] is True
        await log_in(browser, document)
        await browser.wait_for("document.getElementById('live').classList.contains('on')")
        assert await browser.evaluate("document.getElementById('homeassistant').hidden") is True
        assert await browser.evaluate("document.querySelector('#homeassistant button')") is None


async def test_one_card_per_uplink_with_its_state(
    tmp_path: Path, browser: Browser, mosquitto: Mosquitto
) -> None:
    """Two uplinks, one of them without a broker to reach: two cards, each with its badge,
    broker and routes, in the configuration's order."""
    document = web_document(
        tmp_path,
        bridge={"enabled": False, "ha_discovery": False},
        uplinks=[
            {
                "name": name,
                "protocol": "mqtt",
                "broker_address": "127.0.0.1",
                "port": port,
                "connect_retry_delay": 0.1,
                "routes": [{"topic": f"{name}/#"}],
            }
            for name, port in (("home", mosquitto.port), ("away", free_port()))
        ],
    )
    async with running_edge(tmp_path, document):
        await log_in(browser, document)
        await browser.wait_for(f"{text_of('#uplink-home .badge')} === 'connected'")
        await browser.wait_for(f"{text_of('#uplink-away .badge')} === 'backing off'")
        assert await browser.evaluate(
            "[...document.querySelectorAll('#uplinks section')].map((s) => s.id)"
        ) == ["uplink-home", "uplink-away"]
        away = await browser.evaluate(text_of("#uplink-away .body"))
        assert "last errorlost" not in away and "refused the connection" in away, away
        assert await browser.evaluate(
            "[...document.querySelectorAll('#uplink-home table.routes tbody tr')].map((r) => "
            "r.cells[0].textContent)"
        ) == ["home/#"]
        await browser.screenshot(ARTIFACTS / "web-status-uplinks.png")
