"""A disabled Redis, RabbitMQ or Kafka uplink costs nothing: no module of the package but the
link's own imports redis-py, aio-pika or aiokafka, so an appliance with only MQTT never loads
them (the footprint bench measures what they would add)."""

from __future__ import annotations

import json
import subprocess
import sys

CLIENT_LIBRARIES = ("redis", "hiredis", "aio_pika", "aiormq", "pamqp", "aiokafka")
LINK_MODULES = (
    "argentic_edge.bridge.redis",
    "argentic_edge.bridge.rabbitmq",
    "argentic_edge.bridge.kafka",
)


def loaded_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def client_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in CLIENT_LIBRARIES)


def test_every_other_module_of_the_package_leaves_the_client_libraries_alone() -> None:
    modules = loaded_after(
        "import importlib, pkgutil, argentic_edge\n"
        f"skip = {LINK_MODULES!r}\n"
        "for info in pkgutil.walk_packages(argentic_edge.__path__, 'argentic_edge.'):\n"
        "    if info.name not in skip and not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
    )
    assert "argentic_edge.app" in modules and "argentic_edge.bridge.service" in modules
    assert client_modules(modules) == []


def test_the_link_modules_are_what_loads_them() -> None:
    # The control: the probe above would see them if anything imported a link module.
    modules = loaded_after("import " + ", ".join(LINK_MODULES))
    assert {"redis", "hiredis", "aio_pika", "aiormq", "aiokafka"} <= set(client_modules(modules))


def test_an_appliance_with_only_mqtt_makes_its_link_without_them() -> None:
    modules = loaded_after(
        "from argentic_edge.app import Edge\n"
        "from argentic_edge.bridge.link import LinkCallbacks\n"
        "from argentic_edge.bridge.protocols import make_link\n"
        "from argentic_edge.config import parse_config\n"
        "config = parse_config({'bridge': {'mqtt': {'broker_address': '127.0.0.1'}}}, env={})\n"
        "assert [u.protocol for u in config.uplinks] == ['mqtt']\n"
        "none = LinkCallbacks(lambda *a: None, lambda *a: None, lambda *a: None)\n"
        "async def make() -> None:\n"
        "    make_link(config.uplinks[0], none, client_id='c', node_id=lambda: 'n')\n"
        "import asyncio\n"
        "asyncio.run(make())\n"
    )
    assert "argentic_edge.bridge.mqtt" in modules  # the probe really made the MQTT link
    assert client_modules(modules) == []
    assert not set(LINK_MODULES) & modules
