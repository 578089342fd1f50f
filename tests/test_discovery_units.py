"""Records, the PeerTable and its events, address checks: everything discovery decides
without a network."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from zeroconf import DNSAddress, DNSCache, current_time_millis

from argentic_edge.client.discover import find_edge
from argentic_edge.config import ConfigError
from argentic_edge.discovery.browser import cached_addresses, peer_from_info
from argentic_edge.discovery.network import (
    LocalAddress,
    link_address,
    link_addresses,
    local_addresses,
)
from argentic_edge.discovery.record import (
    MAX_ADDRESSES,
    SERVICE_TYPE,
    Peer,
    Record,
    RecordError,
    node_id,
    parse_record,
)
from argentic_edge.discovery.table import PeerTable
from tests.support.appliance import environment

NAME = f"kitchen.{SERVICE_TYPE}"


def keypair_txt(**changes: str | bytes | None) -> dict[bytes, bytes | None]:
    public = zmq.curve_keypair()[0].decode()
    txt: dict[str, str | bytes | None] = {
        "v": "1",
        "id": node_id(public),
        "curve": public,
        "ver": "0.1.0",
        "pub": "5555",
        "sub": "5556",
        "fed": "5557",
        "web": "8099",
        "tls": "ab" * 32,
    }
    txt.update(changes)
    return {
        k.encode(): (v.encode() if isinstance(v, str) else v)
        for k, v in txt.items()
        if v is not None
    }  # None: the key is left out


def peer(
    peer_id: str = "a" * 32,
    name: str = "a",
    state: str = "discovered",
    last_seen: float = 1.0,
    **changes: object,
) -> Peer:
    values: dict[str, object] = dict(
        id=peer_id,
        name=name,
        addresses=("10.0.0.2",),
        pub=5555,
        sub=5556,
        fed=5557,
        web=0,
        curve="k" * 40,
        tls="",
        version="1",
        first_seen=1.0,
        last_seen=last_seen,
        state=state,
    )
    values.update(changes)
    return Peer(**values)  # type: ignore[arg-type]


# --- parse_record ----------------------------------------------------------------------------


def test_a_complete_record_becomes_a_peer() -> None:
    txt = keypair_txt()
    parsed = parse_record(NAME, txt, ["10.0.0.2", "127.0.0.1", "192.168.1.9"], now=42.0)
    assert parsed.name == "kitchen"
    assert parsed.id == txt[b"id"].decode() == node_id(parsed.curve)
    assert (parsed.pub, parsed.sub, parsed.fed, parsed.web) == (5555, 5556, 5557, 8099)
    assert parsed.addresses == ("10.0.0.2", "192.168.1.9")  # loopback is not a LAN address
    assert (parsed.first_seen, parsed.last_seen, parsed.state) == (42.0, 42.0, "discovered")
    assert parsed.tls == "ab" * 32


def test_federation_and_web_may_be_off() -> None:
    parsed = parse_record(NAME, keypair_txt(fed=None, web="0"), ["10.0.0.2"], now=0)
    assert (parsed.fed, parsed.web) == (0, 0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"v": None}, "malformed"),
        ({"v": b""}, "unsupported_version"),
        ({"v": "2"}, "unsupported_version"),
        ({"id": "xyz"}, "malformed"),
        ({"id": "0" * 32}, "malformed"),  # not the id of this key
        ({"curve": "short"}, "malformed"),
        ({"ver": b"\xff"}, "malformed"),  # not UTF-8
        ({"ver": "x" * 33}, "malformed"),
        ({"tls": "nothex"}, "malformed"),
        ({"pub": "http"}, "malformed"),
        ({"pub": "0"}, "bad_port"),
        ({"pub": "70000"}, "bad_port"),
        ({"sub": "22"}, "bad_port"),  # privileged: never accepted from a record
        ({"fed": "1023"}, "bad_port"),
        ({"web": "5555"}, "bad_port"),  # same as pub
    ],
)
def test_bad_records_are_refused_with_the_counter_they_belong_to(
    changes: dict[str, str | bytes | None], reason: str
) -> None:
    with pytest.raises(RecordError) as caught:
        parse_record(NAME, keypair_txt(**changes), ["10.0.0.2"], now=0)
    assert caught.value.reason == reason


@pytest.mark.parametrize("addresses", [[], ["127.0.0.1"], ["224.0.0.251", "0.0.0.0"], ["::1"]])
def test_a_record_without_a_usable_lan_address_is_refused(addresses: list[str]) -> None:
    with pytest.raises(RecordError, match="no usable IPv4 address"):
        parse_record(NAME, keypair_txt(), addresses, now=0)


def test_names_outside_our_service_type_or_too_long_are_refused() -> None:
    with pytest.raises(RecordError):
        parse_record("kitchen._http._tcp.local.", keypair_txt(), ["10.0.0.2"], now=0)
    with pytest.raises(RecordError):
        parse_record(f"{'x' * 64}.{SERVICE_TYPE}", keypair_txt(), ["10.0.0.2"], now=0)


def test_addresses_are_deduplicated_and_bounded() -> None:
    many = [f"10.0.0.{i}" for i in range(1, 30)] * 2
    parsed = parse_record(NAME, keypair_txt(), many, now=0)
    assert len(parsed.addresses) == MAX_ADDRESSES
    assert len(set(parsed.addresses)) == MAX_ADDRESSES


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.binary(min_size=1, max_size=12),
        st.one_of(st.none(), st.binary(max_size=50)),
        max_size=12,
    ),
    st.lists(st.text(max_size=20), max_size=4),
)
def test_arbitrary_records_never_break_the_parser(
    txt: dict[bytes, bytes | None], addresses: list[str]
) -> None:
    try:
        parse_record(NAME, txt, addresses, now=0)
    except RecordError as exc:
        assert exc.reason in ("malformed", "bad_port", "unsupported_version")


def test_what_we_advertise_is_what_a_peer_parses() -> None:
    public = zmq.curve_keypair()[0].decode()
    advert = Record(
        id=node_id(public),
        name="kitchen",
        pub=5555,
        sub=5556,
        fed=5557,
        web=8099,
        curve=public,
        tls="",
        version="0.1.0",
        addresses=("10.0.0.7", "192.168.4.2"),
    )
    parsed = peer_from_info(advert.service_info("kitchen (2)"), now=1.0)
    assert parsed.name == "kitchen (2)"
    assert (parsed.id, parsed.curve, parsed.version) == (advert.id, public, "0.1.0")
    assert (parsed.pub, parsed.sub, parsed.fed, parsed.web) == (5555, 5556, 5557, 8099)
    assert parsed.addresses == ("10.0.0.7", "192.168.4.2")


def test_without_federation_the_fed_key_is_absent() -> None:
    public = zmq.curve_keypair()[0].decode()
    advert = Record(
        id=node_id(public),
        name="n",
        pub=5555,
        sub=5556,
        fed=0,
        web=0,
        curve=public,
        tls="",
        version="0.1.0",
        addresses=("10.0.0.7",),
    )
    assert "fed" not in advert.txt()
    assert advert.txt()["v"] == "1"


# --- PeerTable -------------------------------------------------------------------------------


async def test_the_table_reports_additions_changes_and_removals() -> None:
    table = PeerTable()
    events = table.subscribe()
    table.upsert(peer(last_seen=1))
    table.upsert(peer(last_seen=2))  # same record, later: no event
    table.upsert(peer(last_seen=3, fed=6000))  # a real change
    table.set_state("a" * 32, "trusted")
    table.set_state("a" * 32, "trusted")  # no change, no event
    table.remove("a" * 32)
    kinds = []
    while (event := events.get_nowait()) is not None:
        kinds.append((event.kind, event.peer.state, event.peer.fed))
    assert kinds == [
        ("added", "discovered", 5557),
        ("updated", "discovered", 6000),
        ("updated", "trusted", 6000),
        ("removed", "trusted", 6000),
    ]
    assert "a" * 32 not in table


async def test_an_update_keeps_first_seen_and_state_and_a_lost_peer_comes_back() -> None:
    table = PeerTable()
    table.upsert(peer(last_seen=1))
    table.set_state("a" * 32, "linked")
    stored = table.upsert(peer(last_seen=5, first_seen=5))
    assert stored is not None and (stored.first_seen, stored.state) == (1.0, "linked")
    table.set_state("a" * 32, "lost")
    table.touch("a" * 32, 9.0)  # a lost peer is not refreshed by the timer
    assert table.get("a" * 32).last_seen == 5  # type: ignore[union-attr]
    back = table.upsert(peer(last_seen=10))
    assert back is not None and back.state == "discovered"


async def test_a_full_table_evicts_the_longest_lost_peer_or_refuses() -> None:
    table = PeerTable(max_peers=2)
    events = table.subscribe()
    table.upsert(peer("1" * 32, "one", last_seen=1))
    table.upsert(peer("2" * 32, "two", last_seen=2))
    assert table.upsert(peer("3" * 32, "three")) is None
    assert table.refused == 1 and len(table) == 2
    table.set_state("2" * 32, "lost")
    table.set_state("1" * 32, "lost")
    assert table.upsert(peer("3" * 32, "three")) is not None
    assert {p.id for p in table.peers()} == {"2" * 32, "3" * 32}  # "one" was lost longest
    removed = []
    while (event := events.get_nowait()) is not None:
        if event.kind == "removed":
            removed.append(event.peer.name)
    assert removed == ["one"]


async def test_a_slow_subscriber_loses_the_oldest_events_not_memory() -> None:
    table = PeerTable(max_peers=100)
    slow = table.subscribe(maxsize=3)
    for i in range(10):
        table.upsert(peer(f"{i:032x}", f"p{i}"))
    names = []
    while (event := slow.get_nowait()) is not None:
        names.append(event.peer.name)
    assert names == ["p7", "p8", "p9"]
    assert slow.dropped == 7
    slow.close()
    table.upsert(peer("f" * 32, "later"))
    assert slow.get_nowait() is None


async def test_subscribers_can_await_events() -> None:
    table = PeerTable()
    events = table.subscribe()
    waiter = asyncio.create_task(events.get())
    await asyncio.sleep(0)
    table.upsert(peer())
    event = await asyncio.wait_for(waiter, 1)
    assert (event.kind, event.peer.id) == ("added", "a" * 32)


def test_peers_are_listed_by_name_and_serialise_plainly() -> None:
    table = PeerTable()
    table.upsert(peer("2" * 32, "Zeta"))
    table.upsert(peer("1" * 32, "alpha", state="linked"))
    assert [p.name for p in table.peers()] == ["alpha", "Zeta"]
    document = replace(table.peers()[0], state="linked").to_dict()
    assert document["addresses"] == ["10.0.0.2"] and document["linked"] is True


# --- addresses -------------------------------------------------------------------------------


def local(address: str, prefix: int) -> LocalAddress:
    return LocalAddress("eth0", address, ipaddress.IPv4Network(f"{address}/{prefix}", strict=False))


def test_we_only_link_to_an_advertised_address_on_our_own_subnet() -> None:
    here = [local("192.168.1.10", 24), local("10.1.0.5", 16)]
    assert link_address(peer(addresses=("8.8.8.8", "10.1.7.7")), here) == "10.1.7.7"
    assert link_address(peer(addresses=("8.8.8.8",)), here) is None
    assert link_address(peer(addresses=("192.168.1.10",)), here) is None  # that is us
    assert link_addresses(peer(addresses=("10.1.7.7", "8.8.8.8", "10.1.2.2")), here) == [
        "10.1.7.7",
        "10.1.2.2",
    ]


def test_an_address_that_a_cache_flush_declared_invalid_is_not_the_peers() -> None:
    """RFC 6762 section 10.2. zeroconf keeps such a record a second more and renews that second
    with every later answer for the host: a forged address would outlive the real one."""
    cache, host, now = DNSCache(), "argentic-0123456789ab.local.", current_time_millis()

    def answer(address: str, created: float) -> None:
        record = DNSAddress(host, 1, 0x8001, 60, socket.inet_aton(address), created=created)
        cache.async_mark_unique_records_older_than_1s_to_expire({(host, 1, 1)}, [record], created)
        cache.async_add_records([record])

    answer("10.0.0.2", now - 4000)  # the real peer
    answer("10.0.0.3", now - 2000)  # a forged answer for its host
    assert cached_addresses(cache, host) == ["10.0.0.3"]
    answer("10.0.0.2", now)  # the real peer answers again
    assert cached_addresses(cache, host.upper()) == ["10.0.0.2"]


async def test_find_edge_refuses_to_block_a_running_event_loop() -> None:
    with pytest.raises(RuntimeError, match="async_find_edge"):
        find_edge(0.1)


def test_an_unknown_interface_is_a_configuration_error_naming_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=re.escape("discovery.interfaces")) as caught:
        local_addresses(("no-such-if0",))
    assert "no-such-if0" in str(caught.value) and "lo" in str(caught.value)
    config = tmp_path / "edge.yaml"
    config.write_text("discovery:\n  interfaces: [no-such-if0]\n")
    result = subprocess.run(
        [sys.executable, "-m", "argentic_edge", "peers", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment(),
    )
    assert result.returncode == 1
    assert "discovery.interfaces" in result.stderr and "Traceback" not in result.stderr


def test_host_only_bridges_are_never_lan_addresses() -> None:
    from argentic_edge.discovery.network import is_internal

    assert is_internal("hassio", ipaddress.IPv4Address("172.30.32.1"))
    assert is_internal("docker0", ipaddress.IPv4Address("172.17.0.1"))
    assert is_internal("br-0123456789ab", ipaddress.IPv4Address("172.18.0.1"))
    assert is_internal("veth12ab", ipaddress.IPv4Address("10.1.2.3"))
    assert is_internal("eth1", ipaddress.IPv4Address("172.30.33.5")), (
        "the hassio network by address"
    )
    assert not is_internal("eth0", ipaddress.IPv4Address("192.168.1.20"))
    assert not is_internal("br0", ipaddress.IPv4Address("10.0.0.2"))
