"""TLS and authentication against a real Mosquitto: certificates made by tests/support/pki.py,
passwords with mosquitto_passwd. Failures must be clear in the status, slow (back-off) and
never show a secret."""

from __future__ import annotations

import logging
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from argentic_edge.app import Edge
from argentic_edge.bridge.mqtt import BridgeError
from argentic_edge.bridge.tls import tls_context
from argentic_edge.config import TlsParams
from tests.support.bridge import (
    BusClient,
    MqttClient,
    bridge_of,
    edge_config,
    message,
    prove_paths,
    wait_until,
)
from tests.support.brokers import Mosquitto, free_port, wait_for_port
from tests.support.pki import Pki

PASSWORD = "s3cret-Pa55word!"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


def tls_listener(pki: Pki, *extra: str) -> list[str]:
    """Listener lines for a TLS broker."""
    return [f"cafile {pki.ca}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}", *extra]


@pytest.mark.parametrize("version", ["PROTOCOL_TLS_CLIENT", "PROTOCOL_TLSv1_2", "PROTOCOL_TLSv1_3"])
async def test_tls_versions_the_broker_speaks(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto], version: str
) -> None:
    broker = mosquitto_factory(tls_listener(pki), name=f"tls-{version}")
    tls = {"ca_certs": str(pki.ca), "tls_version": version, "ciphers": "HIGH:!aNULL:!MD5"}
    async with Edge(edge_config(broker.port, mqtt={"tls_params": tls})) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "connected", what=f"a {version} connection")


async def test_mutual_tls_with_a_client_certificate(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory(tls_listener(pki, "require_certificate true"), name="mtls")
    tls = {
        "ca_certs": str(pki.ca),
        "certfile": str(pki.client_cert),
        "keyfile": str(pki.client_key),
    }
    async with Edge(edge_config(broker.port, mqtt={"tls_params": tls})) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "connected", what="a mutual TLS connection")

    without_cert = edge_config(broker.port, mqtt={"tls_params": {"ca_certs": str(pki.ca)}})
    async with Edge(without_cert) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="a refused handshake")
        assert bridge.state != "connected"
        assert "client certificate" in bridge.last_error


async def test_wrong_ca_fails_with_a_clear_status(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory(tls_listener(pki), name="tls-wrong-ca")
    tls = {"ca_certs": str(pki.other_ca), "cert_reqs": "CERT_REQUIRED"}
    async with Edge(edge_config(broker.port, mqtt={"tls_params": tls})) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="the TLS failure")
        error = bridge.status().last_error
        assert error.startswith(f"TLS: the certificate of 127.0.0.1:{broker.port} is not trusted")
        assert "bridge.mqtt.tls_params.ca_certs" in error
        up, reason = bridge.health()
        assert not up and "not trusted" in reason

    insecure = {"ca_certs": str(pki.other_ca), "cert_reqs": "CERT_NONE"}
    async with Edge(edge_config(broker.port, mqtt={"tls_params": insecure})) as edge:
        bridge = bridge_of(edge)  # CERT_NONE: encrypted, not verified, so the wrong CA is ignored
        await wait_until(lambda: bridge.state == "connected", what="an unverified TLS connection")


async def test_tls_to_a_plain_port_and_missing_ca_file_say_what_is_wrong(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = edge_config(mosquitto.port, mqtt={"tls_params": {"cert_reqs": "CERT_NONE"}})
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="the TLS failure")
        assert "is this port a TLS listener?" in bridge.last_error

    missing = tmp_path / "nope.pem"
    config = edge_config(mosquitto.port, mqtt={"tls_params": {"ca_certs": str(missing)}})
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="the missing file")
        assert bridge.last_error == (
            f"bridge.mqtt.tls_params.ca_certs: cannot load '{missing}': No such file or directory"
        )


def test_tls_context_follows_every_seed_value(pki: Pki) -> None:
    required = tls_context(TlsParams(ca_certs=str(pki.ca)))
    assert required.verify_mode == ssl.CERT_REQUIRED and required.check_hostname
    optional = tls_context(TlsParams(ca_certs=str(pki.ca), cert_reqs="CERT_OPTIONAL"))
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    none = tls_context(TlsParams(cert_reqs="CERT_NONE"))
    assert none.verify_mode == ssl.CERT_NONE and not none.check_hostname
    for name, version in [
        ("PROTOCOL_TLSv1", ssl.TLSVersion.TLSv1),
        ("PROTOCOL_TLSv1_1", ssl.TLSVersion.TLSv1_1),
        ("PROTOCOL_TLSv1_2", ssl.TLSVersion.TLSv1_2),
        ("PROTOCOL_TLSv1_3", ssl.TLSVersion.TLSv1_3),
    ]:
        pinned = tls_context(TlsParams(cert_reqs="CERT_NONE", tls_version=name))  # type: ignore[arg-type]
        assert (pinned.minimum_version, pinned.maximum_version) == (version, version)
    with pytest.raises(BridgeError, match=r"tls_params.certfile/keyfile: cannot load"):
        tls_context(
            TlsParams(cert_reqs="CERT_NONE", certfile=str(pki.ca), keyfile=str(pki.other_ca))
        )


@pytest.fixture
def password_broker(mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    password_file = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "edge", PASSWORD],
        check=True,
        capture_output=True,
    )
    return mosquitto_factory(
        [f"password_file {password_file}", "allow_anonymous false"], name="auth"
    )


async def test_username_and_password_accepted(
    password_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = edge_config(password_broker.port, mqtt={"username": "edge", "password": PASSWORD})
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "connected", what="an authenticated connection")
        assert PASSWORD not in repr(bridge.status()) and PASSWORD not in repr(edge.status())
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


async def test_wrong_password_is_refused_clearly_without_a_busy_loop(
    password_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + PASSWORD
    config = edge_config(
        password_broker.port,
        mqtt={"username": "edge", "password": wrong, "connect_retry_delay": 0.2},
    )
    async with Edge(config) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="the refusal")
        # Mosquitto answers a wrong password with "Not authorized" on MQTT 5
        assert bridge.last_error.startswith(
            f"127.0.0.1:{password_broker.port} refused the connection: Not authorized "
            "(check bridge.mqtt.username and password"
        )
        await wait_until(lambda: bridge.attempts >= 3, what="a few attempts")
        # 0.2 s, then 0.4 s, 0.8 s (+-25 %): three attempts take at least ~0.45 s, and more
        # than a handful within a second would be a busy loop.
        assert bridge.attempts <= 4
        assert bridge.state in ("backing off", "connecting")
    texts = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert not [text for text in texts if wrong in text or PASSWORD in text]


async def test_anonymous_to_a_password_broker_is_refused(password_broker: Mosquitto) -> None:
    async with Edge(edge_config(password_broker.port)) as edge:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.last_error is not None, what="the refusal")
        assert "refused the connection: Not authorized" in bridge.last_error


async def test_tls_with_cert_required_carries_messages(
    pki: Pki, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    """CERT_REQUIRED with our CA: messages flow over TLS (read back on a plain listener)."""
    plain_port = free_port()
    broker = mosquitto_factory(
        tls_listener(pki, f"listener {plain_port} 127.0.0.1", "allow_anonymous true"), name="tls-rt"
    )
    wait_for_port(plain_port)  # the start waited for the first listener only
    tls = {"ca_certs": str(pki.ca), "cert_reqs": "CERT_REQUIRED", "tls_version": "PROTOCOL_TLS"}
    config = edge_config(
        broker.port,
        mqtt={"tls_params": tls},
        bridge={"routes": [{"topic": "agent/#", "direction": "out"}]},
    )
    async with Edge(config) as edge, MqttClient(plain_port) as mqtt:
        bridge = bridge_of(edge)
        await wait_until(lambda: bridge.state == "connected", what="a TLS connection")
        assert bridge.status().tls is True
        bus = BusClient(edge)
        try:
            await mqtt.subscribe("agent/#")
            await prove_paths(bus, mqtt, out=("agent/probe", "agent/probe"))
            payload = message("OVER_TLS")
            await bus.send("agent/secure", payload)
            got = await mqtt.next()
            assert (got.topic, got.payload) == ("agent/secure", payload)
        finally:
            bus.close()
