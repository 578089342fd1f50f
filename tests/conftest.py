"""Shared fixtures: real brokers and free ports, nothing faked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.appliance import environment
from tests.support.brokers import Mosquitto
from tests.support.browser import Browser
from tests.support.rabbitmq import RabbitServer
from tests.support.redis import RedisServer


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain Mosquitto on a free loopback port, anonymous access, persistence on."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[object]:
    """Build brokers with extra listener configuration (TLS, passwords); all stopped at the end."""
    started: list[Mosquitto] = []

    def make(extra_conf: list[str] | None = None, name: str = "broker") -> Mosquitto:
        broker = Mosquitto(tmp_path / name, extra_conf=list(extra_conf or []))
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def repo_env() -> dict[str, str]:
    """Environment for running ``python -m argentic_edge`` from this checkout in a subprocess."""
    return environment()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    """One RabbitMQ node for the whole session (it boots in seconds); tests use their own
    exchange and queue names. A test that kills a broker starts its own node instead."""
    node = RabbitServer(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port, append-only persistence on."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless Chromium; at the end the page must have run without script or CSP errors."""
    chromium = await Browser.launch(tmp_path / "chromium")
    yield chromium
    await chromium.close()
    assert chromium.problems == [], chromium.problems
