"""Nothing listens beyond what the configuration says.

The appliance runs as users run it, with every service on, and its sockets are read from /proc
(tests/support/sockets.py): the set of listening TCP sockets and of UDP sockets open to anyone must be
exactly the set the configuration names, at exactly the configured addresses. Each listener
follows its own key: the bus ``messaging.broker_address``, the web ``web.host``.

With discovery on, mDNS multicasts on every LAN interface, so that case runs in a network
namespace of its own (tests/support/netns.py) instead of on the test machine's LAN.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.appliance import Process
from tests.support.brokers import Mosquitto, free_port
from tests.support.config import write_yaml
from tests.support.netns import Lan, Lines, netns_unavailable
from tests.support.sockets import listening

BUS_ADDRESS = "127.0.0.2"  # the whole of 127/8 is loopback on Linux: one address per listener
WEB_ADDRESS = "127.0.0.3"
UP = "is up as node"


def test_every_service_on_listens_only_where_configured(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Bus, bridge, certificates (so the web is HTTPS), web, agents; discovery off: the bus's
    two ports on its address, the web port on its own, no UDP at all (no mDNS)."""
    front, back, web = free_port(), free_port(), free_port()
    config = write_yaml(
        tmp_path / "edge.yaml",
        {
            "node_name": "listen-test",
            "data_dir": str(tmp_path / "data"),
            "messaging": {"broker_address": BUS_ADDRESS, "port": front, "backend_port": back},
            "bridge": {
                "enabled": True,
                "ha_discovery": True,
                "mqtt": {"broker_address": "127.0.0.1", "port": mosquitto.port},
            },
            "discovery": {"enabled": False},
            "certificates": {"enabled": True},
            "web": {
                "enabled": True,
                "host": WEB_ADDRESS,
                "port": web,
                "password": "pw-listen",
                "api_token": "token-listen",
            },
        },
    )
    with Process(tmp_path / "run", ("run", "--config", str(config))) as appliance:
        appliance.wait_for_output(UP)
        appliance.wait_for_output("uplink mqtt: connected to")  # a client: it must not listen
        found = listening(appliance.pid)
        output = appliance.output()
    assert found == {
        ("tcp", BUS_ADDRESS, front),
        ("tcp", BUS_ADDRESS, back),
        ("tcp", WEB_ADDRESS, web),
    }, output


UNAVAILABLE = netns_unavailable()


@pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")
@pytest.mark.parametrize("discovery", [True, False], ids=["discovery-on", "discovery-off"])
def test_in_a_lan_namespace_mdns_and_federation_listen_only_when_enabled(
    tmp_path: Path, discovery: bool
) -> None:
    """On a LAN of its own: the bus on every address (the default), federation's export port
    when federation is on, the web on the LAN address only, UDP 5353 only with discovery."""
    front, back, export, web = 6555, 6556, 6557, 6099  # a namespace of our own: all free
    lan = Lan().create()
    try:
        node = lan.add()
        config = write_yaml(
            tmp_path / "edge.yaml",
            {
                "node_name": "listen-lan",
                "data_dir": str(tmp_path / "data"),
                "messaging": {"port": front, "backend_port": back},
                "bridge": {"enabled": False},
                "discovery": {
                    "enabled": discovery,
                    "federation": {"enabled": True, "export_port": export},
                },
                "certificates": {"enabled": True},
                "web": {
                    "enabled": True,
                    "host": node.address,
                    "port": web,
                    "password": "pw-listen",
                    "api_token": "token-listen",
                },
            },
        )
        log = tmp_path / "node.log"
        process = node.popen(
            node.python("-m", "argentic_edge", "run", "--config", str(config)),
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        lines = Lines(process.stderr, copy=log)
        while UP not in (line := lines.next(30)):
            assert "Traceback" not in line, log.read_text()
        found = listening(process.pid)
    finally:
        lan.close()
    tcp = {(address, port) for protocol, address, port in found if protocol == "tcp"}
    udp = {(address, port) for protocol, address, port in found if protocol == "udp"}
    expected = {("0.0.0.0", front), ("0.0.0.0", back), (node.address, web)}
    if discovery:  # federation rides on discovery: no peers can be found without it
        expected.add(("0.0.0.0", export))
    assert tcp == expected, log.read_text()
    if discovery:
        # zeroconf receives on 0.0.0.0:5353 and sends from 5353 on each interface's address
        assert ("0.0.0.0", 5353) in udp
        assert udp <= {("0.0.0.0", 5353), ("127.0.0.1", 5353), (node.address, 5353)}, udp
    else:
        assert udp == set(), udp
