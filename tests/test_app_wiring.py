"""How app.py wires the services: what one service reads of another's section stays current."""

from __future__ import annotations

from pathlib import Path

from argentic_edge.app import Edge
from argentic_edge.config import parse_config
from tests.support.bridge import wait_until
from tests.support.brokers import free_port
from tests.support.config import config_document


def _advertised_web_port(edge: Edge) -> int:
    advertiser = edge.services["peers"]._advertiser  # type: ignore[attr-defined]
    return int(advertiser.source().web)


async def test_a_live_web_port_change_reaches_the_mdns_record(tmp_path: Path) -> None:
    """The mDNS record carries the web port; changing web.port live must change the record
    (mDNS on loopback only: the record is built but nothing leaves the machine)."""
    first, second = free_port(), free_port()
    raw = config_document(
        tmp_path / "data",
        discovery={"enabled": True, "interfaces": ["lo"], "federation": {"enabled": False}},
        web={"enabled": True, "host": "127.0.0.1", "port": first, "password": "pw-wiring"},
    )
    async with Edge(parse_config(raw, env={})) as edge:
        assert _advertised_web_port(edge) == first
        raw["web"] = {**raw["web"], "port": second}  # type: ignore[dict-item]
        await edge.apply(parse_config(raw, env={}))
        assert _advertised_web_port(edge) == second


def test_the_home_assistant_device_links_to_the_page_as_the_lan_reaches_it() -> None:
    """configuration_url: the listener's own address, a LAN address for a wildcard one, the
    scheme the page speaks, nothing while the web is off."""
    import socket

    from argentic_edge.app import _page_url
    from argentic_edge.discovery.interfaces import local_addresses

    def url(**web: object) -> str | None:
        return _page_url(parse_config({"web": {"port": 8443, **web}}, env={}))

    assert url(host="192.168.1.5") == "https://192.168.1.5:8443/"
    assert url(host="::1") == "https://[::1]:8443/"
    assert url(enabled=False) is None
    lan = local_addresses()
    expected = lan[0].address if lan else socket.gethostname()
    assert url() == f"https://{expected}:8443/"  # web.host 0.0.0.0, the default
    plain = parse_config({"certificates": {"enabled": False}, "web": {"host": "10.0.0.2"}}, env={})
    assert _page_url(plain) == "http://10.0.0.2:8099/"


async def test_a_kafka_uplink_names_the_appliance_by_its_node_id_through_a_rename(
    tmp_path: Path,
) -> None:
    """The record key, the own-record header and the consumer group come from the node id, not
    the name: a rename keeps the group (it would read from auto_offset_reset again), and two
    appliances left at the same host name would share a group and split its partitions. The
    broker refuses the connection: the link is made before the first attempt."""
    from argentic_edge.bridge.kafka import KafkaLink
    from argentic_edge.federation.identity import load_or_create_keys
    from argentic_edge.storage import federation_dir

    data = tmp_path / "data"
    kafka = {"name": "fleet", "protocol": "kafka", "broker_address": "127.0.0.1"}
    raw = config_document(data, node_name="kitchen", uplinks=[{**kafka, "port": free_port()}])

    def link(edge: Edge) -> KafkaLink:
        made = edge.services["uplink:fleet"]._link  # type: ignore[attr-defined]
        assert isinstance(made, KafkaLink)
        return made

    async with Edge(parse_config(raw, env={})) as edge:
        await wait_until(lambda: edge.services["uplink:fleet"]._link is not None, 10, "a link")  # type: ignore[attr-defined]
        node_id = load_or_create_keys(federation_dir(data)).node_id
        first = link(edge)
        assert first.group_id == f"argentic-edge-{node_id}"
        assert first._key == node_id.encode() and first._node_header[1] == node_id.encode()
        await edge.apply(parse_config({**raw, "node_name": "pantry"}, env={}))
        await wait_until(lambda: edge.services["uplink:fleet"]._link is not None, 10, "a link")  # type: ignore[attr-defined]
        assert link(edge) is not first, "the rename restarted the uplink (its client id changed)"
        assert link(edge).group_id == f"argentic-edge-{node_id}"
        assert link(edge).client_id == "argentic-edge-pantry-fleet"
