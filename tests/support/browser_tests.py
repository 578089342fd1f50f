"""What every browser test file shares: the marks that skip it without Chromium, where it saves
screenshots, and a page expression for an element's text. The ``browser`` fixture that launches
and checks the browser is in tests/conftest.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs chromium"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def text_of(selector: str) -> str:
    """JavaScript for the text of the first element matching ``selector`` (empty: undefined)."""
    return f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent"
