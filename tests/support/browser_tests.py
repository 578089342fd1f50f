"""What every browser test file shares: the marks that skip it without Chromium, where it saves
screenshots, and a page expression for an element's text. The ``browser`` fixture that launches
and checks the browser is in tests/conftest.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.browser import CHROMIUM, Browser
from tests.support.config import PASSWORD

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs chromium"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

Test = TypeVar("Test", bound=Callable[..., Any])


def in_chromium(test: Test) -> Test:
    """BROWSER_MARKS on one test, in a module whose other tests need no browser."""
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


def text_of(selector: str) -> str:
    """JavaScript for the text of the first element matching ``selector`` (empty: undefined)."""
    return f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent"


def bridge_to(port: int) -> dict[str, Any]:
    """A ``bridge`` section: the MQTT bridge (and Home Assistant discovery) on the broker at
    ``port`` of loopback, retrying quickly."""
    mqtt = {"broker_address": "127.0.0.1", "port": port, "connect_retry_delay": 0.1}
    return {"enabled": True, "mqtt": mqtt}


def page_url(document: dict[str, Any]) -> str:
    """The appliance's page for a configuration made by tests.support.web.web_document."""
    return f"http://127.0.0.1:{document['web']['port']}/"


async def log_in(browser: Browser, document: dict[str, Any]) -> None:
    """Open the appliance's page and log in with the test password."""
    await browser.navigate(page_url(document))
    await browser.log_in(PASSWORD)
