"""Keys on disk, the trust store and the ZAP key policy: no network needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import zmq

from argentic_edge.config import ConfigError, FederationConfig, parse_config
from argentic_edge.discovery.record import node_id
from argentic_edge.federation.identity import KEY_FILE, FederationError, load_or_create_keys
from argentic_edge.federation.trust import TRUST_FILE, KeyPolicy, TrustStore


def key() -> str:
    return zmq.curve_keypair()[0].decode()


def test_the_key_pair_is_created_private_and_stays_the_same(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "federation")
    path = tmp_path / "federation" / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_keys(tmp_path / "federation")
    assert (again.public, again.secret) == (keys.public, keys.secret)
    assert keys.node_id == node_id(keys.public) and len(keys.node_id) == 32
    assert keys.secret.reveal() not in repr(keys) and keys.secret.reveal() not in str(keys)


def test_a_readable_key_file_is_made_private(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    load_or_create_keys(tmp_path)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["not json", "{}", '{"public": "x", "secret": "y"}'])
def test_a_damaged_key_file_is_an_error_naming_it_not_a_new_identity(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / KEY_FILE).write_text(content)
    with pytest.raises(FederationError, match=KEY_FILE):
        load_or_create_keys(tmp_path)
    assert (tmp_path / KEY_FILE).read_text() == content


def test_keys_that_do_not_belong_together_are_refused(tmp_path: Path) -> None:
    first, second = zmq.curve_keypair(), zmq.curve_keypair()
    (tmp_path / KEY_FILE).write_text(
        json.dumps({"public": first[0].decode(), "secret": second[1].decode()})
    )
    with pytest.raises(FederationError, match="does not belong"):
        load_or_create_keys(tmp_path)


def test_trust_comes_from_the_configuration_by_id_or_key(tmp_path: Path) -> None:
    by_id, by_key, stranger = key(), key(), key()
    store = TrustStore(FederationConfig(trusted_peers=(node_id(by_id), by_key)), tmp_path)
    store.load()
    assert store.trusts(node_id(by_id), by_id) and store.source(node_id(by_id), by_id) == "config"
    assert store.trusts(node_id(by_key), by_key)
    assert not store.trusts(node_id(stranger), stranger)
    assert store.source(node_id(stranger), stranger) is None


def test_approvals_persist_and_can_be_withdrawn(tmp_path: Path) -> None:
    peer = key()
    store = TrustStore(FederationConfig(), tmp_path)
    store.approve(node_id(peer), peer, "kitchen")
    assert (tmp_path / TRUST_FILE).stat().st_mode & 0o777 == 0o600
    reloaded = TrustStore(FederationConfig(), tmp_path)
    reloaded.load()
    assert reloaded.trusts(node_id(peer), peer)
    assert reloaded.source(node_id(peer), peer) == "approved"
    assert [a.name for a in reloaded.approvals()] == ["kitchen"]
    assert reloaded.forget(node_id(peer)) is True
    assert reloaded.forget(node_id(peer)) is False
    again = TrustStore(FederationConfig(), tmp_path)
    again.load()
    assert not again.trusts(node_id(peer), peer)


def test_an_approval_must_name_a_real_id_and_its_own_key(tmp_path: Path) -> None:
    store = TrustStore(FederationConfig(), tmp_path)
    with pytest.raises(FederationError, match="not a peer id"):
        store.approve("kitchen", None, "")
    with pytest.raises(FederationError, match="does not match"):
        store.approve(node_id(key()), key(), "")
    store.approve(node_id(key()), None, "not seen yet")  # an id alone is enough


def test_a_peer_trusted_by_the_configuration_cannot_be_forgotten_at_runtime(tmp_path: Path) -> None:
    peer = key()
    store = TrustStore(FederationConfig(trusted_peers=(node_id(peer),)), tmp_path)
    with pytest.raises(FederationError, match="trusted_peers"):
        store.forget(node_id(peer))


def test_a_damaged_trust_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / TRUST_FILE).write_text("[1, 2")
    with pytest.raises(FederationError, match=TRUST_FILE):
        TrustStore(FederationConfig(), tmp_path).load()


def test_open_mode_trusts_everyone_but_zap_admits_only_advertised_keys(tmp_path: Path) -> None:
    advertised, stranger = key(), key()
    store = TrustStore(FederationConfig(trust="open"), tmp_path)
    assert store.trusts(node_id(stranger), stranger)
    policy = store.policy({node_id(advertised): advertised})
    assert policy.allows(advertised) and not policy.allows(stranger)


def test_the_approved_mode_policy_admits_trusted_ids_and_keys_only(tmp_path: Path) -> None:
    by_id, by_key, approved, stranger = key(), key(), key(), key()
    store = TrustStore(FederationConfig(trusted_peers=(node_id(by_id), by_key)), tmp_path)
    store.approve(node_id(approved), None, "")
    policy = store.policy({node_id(stranger): stranger})  # advertising is not trust
    assert policy.allows(by_id) and policy.allows(by_key) and policy.allows(approved)
    assert not policy.allows(stranger)
    assert not policy.allows("garbage")
    assert not KeyPolicy().allows(by_id)


def test_the_configuration_checks_trusted_peers() -> None:
    good = key()
    config = parse_config({"discovery": {"federation": {"trusted_peers": [good, "a" * 32]}}})
    assert config.discovery.federation.trusted_peers == (good, "a" * 32)
    with pytest.raises(ConfigError, match=re.escape("discovery.federation.trusted_peers")):
        parse_config({"discovery": {"federation": {"trusted_peers": ["kitchen"]}}})
    with pytest.raises(ConfigError, match=re.escape("discovery.liveness_interval")):
        parse_config({"discovery": {"liveness_interval": 0.1}})
