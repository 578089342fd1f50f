"""Argentic 0.16.6's own messaging drivers, loaded from the installed PyPI package.

``import argentic`` runs the package's ``__init__``, which imports the agent and LLM stack
(chromadb, sentence-transformers, torch): gigabytes the drivers never use, so scripts/setup
installs the wheel with ``--no-deps``. Here the parent packages are registered as bare namespace
modules pointing at the installed directories, and the driver modules themselves (and what they
import: configs, base definitions, the message models) run unmodified.

``REDIS_FIX`` is the change docs/redis.md tells Argentic users to make in ``RedisDriver.py``:
its ``import aioredis`` fails on Python 3.11+, redis-py's asyncio client has the same API.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

PARENTS = ("argentic", "argentic.core", "argentic.core.messager", "argentic.core.protocol")
DRIVERS = "argentic.core.messager.drivers"
REDIS_FIX = (
    ("import aioredis\n", "import redis.asyncio as aioredis\n"),
    ("from aioredis.client import PubSub", "from redis.asyncio.client import PubSub"),
)


@functools.cache
def package_dir() -> Path:
    spec = importlib.util.find_spec("argentic")  # finds it without running its __init__
    assert spec is not None and spec.submodule_search_locations, "argentic is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _register_parents() -> None:
    root = package_dir()
    for name in PARENTS:
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            sys.modules[name] = module


def driver_module(name: str) -> Any:
    """``argentic.core.messager.drivers.<name>`` as shipped (RabbitMQDriver, RedisDriver...)."""
    _register_parents()
    return importlib.import_module(f"{DRIVERS}.{name}")


def fixed_redis_driver() -> Any:
    """Argentic's RedisDriver module with the documented change (REDIS_FIX) and nothing else."""
    _register_parents()
    importlib.import_module(DRIVERS)
    source = (package_dir() / "core" / "messager" / "drivers" / "RedisDriver.py").read_text()
    for old, new in REDIS_FIX:
        assert old in source, f"RedisDriver.py no longer contains {old!r}"
        source = source.replace(old, new)
    module = types.ModuleType(f"{DRIVERS}.RedisDriver_fixed")
    module.__package__ = DRIVERS
    exec(compile(source, "RedisDriver.py (fixed)", "exec"), module.__dict__)
    return module


def message_models() -> Any:
    """``argentic.core.protocol.message`` (BaseMessage and friends)."""
    _register_parents()
    return importlib.import_module("argentic.core.protocol.message")


async def redis_agent(port: int) -> Any:
    """Argentic's RedisDriver (with REDIS_FIX), connected to the redis-server on ``port``."""
    drivers = fixed_redis_driver()
    driver = drivers.RedisDriver(drivers.RedisDriverConfig(url="127.0.0.1", port=port))
    await driver.connect()
    return driver


async def rabbit_agent(port: int) -> Any:
    """Argentic's RabbitMQDriver as shipped, connected as guest to the node on ``port``."""
    drivers = driver_module("RabbitMQDriver")
    configs = driver_module("configs")
    driver = drivers.RabbitMQDriver(
        configs.RabbitMQDriverConfig(url="127.0.0.1", port=port, user="guest", password="guest")
    )
    await driver.connect()
    return driver


def collector() -> tuple[list[Any], Callable[[Any], Awaitable[None]]]:
    """A list and the async handler a driver's ``subscribe`` is given to fill it."""
    received: list[Any] = []

    async def handler(message: Any) -> None:
        received.append(message)

    return received, handler
