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


async def test_kafka_and_redis_uplinks_name_the_appliance_by_its_node_id_through_a_rename(
    tmp_path: Path,
) -> None:
    """The Kafka record key, own-record header and consumer group, and the Redis streams group
    and consumer, come from the node id, not the name: after a rename a new Kafka group would
    read from auto_offset_reset again and a new Redis consumer would never get what the old one
    was handed; two appliances left at the same host name would share a group and split it.
    The brokers refuse the connection: each link is made before its first attempt."""
    from argentic_edge.bridge.kafka import KafkaLink
    from argentic_edge.bridge.redis import RedisLink
    from argentic_edge.federation.identity import load_or_create_keys
    from argentic_edge.storage import federation_dir

    data = tmp_path / "data"
    local = {"broker_address": "127.0.0.1", "connect_retry_delay": 0.2}
    uplinks = [
        {"name": "fleet", "protocol": "kafka", "port": free_port(), **local},
        {"name": "cache", "protocol": "redis", "mode": "streams", "port": free_port(), **local},
    ]
    raw = config_document(data, node_name="kitchen", uplinks=uplinks)

    async def links(edge: Edge) -> tuple[KafkaLink, RedisLink]:
        made = [edge.services[f"uplink:{name}"] for name in ("fleet", "cache")]
        await wait_until(lambda: all(u._link is not None for u in made), 10, "links")  # type: ignore[attr-defined]
        kafka, redis = (u._link for u in made)  # type: ignore[attr-defined]
        assert isinstance(kafka, KafkaLink) and isinstance(redis, RedisLink)
        return kafka, redis

    async with Edge(parse_config(raw, env={})) as edge:
        kafka, redis = await links(edge)
        node_id = load_or_create_keys(federation_dir(data)).node_id
        assert kafka.group_id == redis.group == f"argentic-edge-{node_id}"
        assert kafka._key == node_id.encode() and kafka._node_header[1] == node_id.encode()
        assert redis.consumer == f"{node_id}-cache"
        await edge.apply(parse_config({**raw, "node_name": "pantry"}, env={}))
        renamed = await links(edge)
        assert renamed[0] is not kafka and renamed[1] is not redis, "the rename made new links"
        assert renamed[0].client_id == "argentic-edge-pantry-fleet"
        assert renamed[0].group_id == renamed[1].group == f"argentic-edge-{node_id}"
        assert renamed[0]._key == node_id.encode()
        assert renamed[1].consumer == f"{node_id}-cache"
