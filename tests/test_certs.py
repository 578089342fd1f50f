"""Certificates as a user meets them: files on first start, real TLS handshakes (aiohttp, Mosquitto
with client certificates), renewal under a running server, brought-your-own files, bad input, the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import argentic_edge.cli.certs as certs_cli
from argentic_edge.certs.files import CertError, server_ssl_context, utcnow
from argentic_edge.certs.issuing import CertStore, make_ca, make_leaf
from argentic_edge.certs.service import CertManager, ExpiryWarnings
from tests.support.brokers import Mosquitto

NODE = "testnode"
TIMEOUT = 15


# --- helpers -----------------------------------------------------------------------------------


def make_store(tmp_path: Path, **options: object) -> CertStore:
    return CertStore(tmp_path / "data" / "certs", NODE, **options)  # type: ignore[arg-type]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` with its bytes: equal snapshots mean nothing was touched."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def openssl(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)


def openssl_fingerprint(path: Path) -> str:
    out = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", path).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def pem_key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def interface_addresses() -> set[str]:
    """This machine's addresses as iproute2 reports them (not link-local): what the SANs must cover."""
    links = json.loads(
        subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    )
    return {
        a["local"] for link in links for a in link.get("addr_info", []) if a.get("scope") != "link"
    }


@dataclasses.dataclass
class OtherCA:
    """A CA that is not ours, e.g. the one behind Home Assistant's /ssl files."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "other") -> OtherCA:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(
            make_ca(key, name, dt.timedelta(days=3650), utcnow() - dt.timedelta(days=1000)), key
        )

    def pair(
        self, directory: Path, *, issued: dt.datetime | None = None, days: float = 90
    ) -> tuple[Path, Path]:
        """fullchain.pem (leaf then CA) and privkey.pem, written like another tool would."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        leaf = make_leaf(
            self.cert,
            self.key,
            key,
            "homeassistant.local",
            sans,
            client=False,
            validity=dt.timedelta(days=days),
            now=issued or utcnow(),
        )
        directory.mkdir(parents=True, exist_ok=True)
        certfile, keyfile = directory / "fullchain.pem", directory / "privkey.pem"
        certfile.write_bytes(pem_cert(leaf) + pem_cert(self.cert))
        keyfile.write_bytes(pem_key(key))
        keyfile.chmod(0o600)
        return certfile, keyfile

    def cafile(self, directory: Path) -> Path:
        path = directory / "other-ca.pem"
        path.write_bytes(pem_cert(self.cert))
        return path


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` refuses new entries even for root: chmod does not stop root, ``chattr +i``
    (immutable) does; a plain user gets chmod 0555, which is enough for them."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def run_cli(*argv: object) -> int:
    """What the lead's cli.py does: add the certs tree to a parser, parse, call the handler."""
    parser = argparse.ArgumentParser(prog="argentic-edge")
    certs_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["certs", *map(str, argv)])
    return args.func(args)


RELEASE = web.AppKey("release", asyncio.Event)


@contextlib.asynccontextmanager
async def https_server(context: ssl.SSLContext) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """An aiohttp HTTPS server: ``/`` answers the client's port, ``/stream`` holds its response
    open until the returned event is set."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"peer_port": request.transport.get_extra_info("peername")[1]})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first\n")
        await request.app[RELEASE].wait()
        await response.write(b"second\n")
        await response.write_eof()
        return response

    app = web.Application()
    app[RELEASE] = asyncio.Event()
    app.router.add_get("/", hello)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield runner.addresses[0][1], app[RELEASE]
    finally:
        app[RELEASE].set()
        await runner.cleanup()


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


async def peer_fingerprint(port: int, cafile: Path, host: str = "localhost") -> str:
    """A fresh TLS connection's server certificate (sha256), verified against ``cafile``."""
    async with asyncio.timeout(TIMEOUT):
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(cafile), server_hostname=host
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


def response_fingerprint(response: aiohttp.ClientResponse) -> str:
    """The server certificate of a response still being read (a finished one has left its connection)."""
    assert response.connection is not None and response.connection.transport is not None
    der = response.connection.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


# --- first start -------------------------------------------------------------------------------


def test_first_start_creates_a_ca_and_a_server_certificate_for_every_local_name(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    store.ensure()

    assert sorted(p.name for p in store.directory.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert (mode(store.ca_key_path), mode(store.server_key_path)) == (0o600, 0o600)
    assert (mode(store.ca_cert_path), mode(store.server_cert_path)) == (0o644, 0o644)

    ca, server = load_cert(store.ca_cert_path), load_cert(store.server_cert_path)
    for cert in (ca, server):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
    ca_life = ca.not_valid_after_utc - utcnow()
    assert dt.timedelta(days=3649) < ca_life <= dt.timedelta(days=3650)
    assert server.not_valid_after_utc - server.not_valid_before_utc <= dt.timedelta(days=397)

    hostname = socket.gethostname()
    sans = {san for info in store.status() if info.name == "server" for san in info.sans}
    assert {hostname.lower(), f"{hostname.split('.')[0].lower()}.local", "localhost"} <= sans
    assert interface_addresses() <= sans

    verify = openssl(
        "verify",
        "-CAfile",
        store.ca_cert_path,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        f"{hostname.split('.')[0]}.local",
        store.server_cert_path,
    )
    assert verify.returncode == 0, verify.stderr
    assert (
        openssl(
            "verify",
            "-CAfile",
            store.ca_cert_path,
            "-verify_ip",
            "127.0.0.1",
            store.server_cert_path,
        ).returncode
        == 0
    )

    before = snapshot(store.directory)
    store.ensure()
    assert snapshot(store.directory) == before, "a second start must not rewrite good files"
    assert store.fingerprint() == openssl_fingerprint(store.server_cert_path)


def test_settings_outside_their_range_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(CertError, match=re.escape("certificates.validity_days")):
        make_store(tmp_path, validity_days=398)
    with pytest.raises(CertError, match=re.escape("certificates.renewal_window")):
        make_store(tmp_path, renewal_window=1.5)
    with pytest.raises(CertError, match=re.escape("certfile and certificates.keyfile go together")):
        make_store(tmp_path, certfile="/ssl/fullchain.pem")


# --- real handshakes ---------------------------------------------------------------------------


async def test_https_server_is_trusted_by_clients_of_our_ca_only(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.ensure()
    stranger = OtherCA.create().cafile(tmp_path)
    async with (
        https_server(server_ssl_context(store)) as (port, _),
        aiohttp.ClientSession() as session,
    ):
        for host in ("127.0.0.1", "localhost"):
            async with session.get(
                f"https://{host}:{port}/", ssl=client_context(store.ca_cert_path)
            ) as response:
                assert response.status == 200
        assert await peer_fingerprint(port, store.ca_cert_path) == store.fingerprint()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"https://127.0.0.1:{port}/", ssl=client_context(stranger)):
                pass


async def mqtt_roundtrip(port: int, tls: ssl.SSLContext) -> bytes:
    """Connect, subscribe, publish, receive: what an agent does first."""
    async with asyncio.timeout(TIMEOUT):
        async with aiomqtt.Client("127.0.0.1", port, tls_context=tls, timeout=5) as client:
            await client.subscribe("certs/hello", qos=1)
            await client.publish("certs/hello", b"over mutual TLS", qos=1)
            async for message in client.messages:
                return bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("no message")


def mqtt_connect(port: int, tls: ssl.SSLContext) -> str:
    """How paho's connection attempt ends: ``connected`` (CONNACK) or ``lost: <reason>``.

    Under TLS 1.3 the client's handshake finishes before the broker checks the client
    certificate, so a refusal shows as the connection dropping before CONNACK.
    """
    ended = threading.Event()
    outcome: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.tls_set_context(tls)
    client.on_connect = lambda *args: (outcome.append(f"connected: {args[3]}"), ended.set())
    client.on_disconnect = lambda *args: (outcome.append(f"lost: {args[3]}"), ended.set())
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    try:
        assert ended.wait(TIMEOUT), "neither CONNACK nor a disconnect"
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


async def test_mosquitto_mutual_tls_with_bundles_from_certs_issue(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    data = tmp_path / "data"
    assert run_cli("issue", "broker", "--data-dir", data) == 0
    assert run_cli("issue", "agent", "--client", "--data-dir", data) == 0
    broker_files, agent_files = (
        data / "certs" / "issued" / "broker",
        data / "certs" / "issued" / "agent",
    )
    assert mode(broker_files / "broker.key") == 0o600 and mode(agent_files / "agent.key") == 0o600
    broker = mosquitto_factory(
        [
            f"cafile {broker_files / 'ca.pem'}",
            f"certfile {broker_files / 'broker.pem'}",
            f"keyfile {broker_files / 'broker.key'}",
            "require_certificate true",
        ]
    )

    ours = client_context(agent_files / "ca.pem")
    ours.load_cert_chain(agent_files / "agent.pem", agent_files / "agent.key")
    no_certificate = client_context(agent_files / "ca.pem")
    other_files = CertStore(tmp_path / "other", "othernode").issue("agent", client=True)
    foreign = client_context(agent_files / "ca.pem")
    foreign.load_cert_chain(other_files["cert"], other_files["key"])

    outcomes = await asyncio.gather(
        *(
            asyncio.to_thread(mqtt_connect, broker.port, tls)
            for tls in (ours, no_certificate, foreign)
        )
    )
    assert outcomes[0] == "connected: Success"
    assert outcomes[1].startswith("lost") and outcomes[2].startswith("lost"), outcomes
    assert await mqtt_roundtrip(broker.port, ours) == b"over mutual TLS"


# --- renewal -----------------------------------------------------------------------------------


def test_a_certificate_is_due_in_the_last_third_of_its_life(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.ensure()
    cert = load_cert(store.server_cert_path)
    start, life = cert.not_valid_before_utc, cert.not_valid_after_utc - cert.not_valid_before_utc
    assert not store.needs_renewal(now=start + life * 0.6)
    assert store.needs_renewal(now=start + life * 0.7)
    assert store.needs_renewal(now=cert.not_valid_after_utc + dt.timedelta(seconds=1))
    assert store.renew() is False
    assert store.renew(force=True) is True
    assert (
        store.fingerprint()
        != hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )


def test_a_new_node_name_is_covered_by_a_new_certificate(tmp_path: Path) -> None:
    make_store(tmp_path).ensure()
    renamed = CertStore(tmp_path / "data" / "certs", "kitchen-pi")
    ca_before = renamed.ca_cert_path.read_bytes()
    assert renamed.needs_renewal()
    renamed.ensure()
    assert {"kitchen-pi", "kitchen-pi.local"} <= set(renamed.status()[1].sans)
    assert renamed.ca_cert_path.read_bytes() == ca_before


async def test_renewal_while_serving_reloads_in_place_and_keeps_open_connections(
    tmp_path: Path,
) -> None:
    # Three-second certificates renewed in their last half: the manager renews about 1.5 s in.
    store = make_store(tmp_path, validity_days=3 / 86400, renewal_window=0.5)
    manager = CertManager(store, check_interval=0.05)
    await manager.start()
    assert manager.error is None
    context = server_ssl_context(store)
    manager.add_ssl_context(context)
    announced: asyncio.Queue[str] = asyncio.Queue()
    manager.on_renewed(lambda info: announced.put_nowait(info.fingerprint_sha256))
    first = store.fingerprint()
    trust = client_context(store.ca_cert_path)
    try:
        async with (
            https_server(context) as (port, release),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust, limit=1)) as keep_alive,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as streaming,
        ):
            async with keep_alive.get(f"https://localhost:{port}/") as response:
                old_port = (await response.json())["peer_port"]
            async with streaming.get(f"https://localhost:{port}/stream") as stream:
                assert response_fingerprint(stream) == first
                assert await asyncio.wait_for(stream.content.readline(), TIMEOUT) == b"first\n"

                renewed = {await asyncio.wait_for(announced.get(), TIMEOUT)}
                served = await peer_fingerprint(port, store.ca_cert_path)
                while not announced.empty():
                    renewed.add(announced.get_nowait())
                assert served != first and served in renewed

                release.set()
                assert await asyncio.wait_for(stream.content.read(), TIMEOUT) == b"second\n"
            async with keep_alive.get(f"https://localhost:{port}/") as response:
                assert (await response.json())["peer_port"] == old_port, (
                    "the kept-alive connection was dropped"
                )
    finally:
        await manager.stop()
    assert manager.error is None
    assert openssl("verify", "-CAfile", store.ca_cert_path, store.server_cert_path).returncode == 0


async def test_brought_files_replaced_on_disk_are_reloaded_and_a_bad_replacement_is_not(
    tmp_path: Path,
) -> None:
    home_assistant = OtherCA.create("home-assistant")
    ssl_dir = tmp_path / "ssl"
    certfile, keyfile = home_assistant.pair(ssl_dir)
    store = make_store(tmp_path, certfile=certfile, keyfile=keyfile)
    manager = CertManager(store)
    await manager.start()
    context = server_ssl_context(store)
    manager.add_ssl_context(context)
    announced: list[str] = []

    async def remember(info: object) -> None:
        announced.append(info.fingerprint_sha256)  # type: ignore[attr-defined]

    manager.on_renewed(remember)
    cafile = home_assistant.cafile(tmp_path)
    try:
        async with https_server(context) as (port, _):
            first = await peer_fingerprint(port, cafile)
            assert first == store.fingerprint() and manager.error is None

            staged = home_assistant.pair(tmp_path / "staged")  # the Let's Encrypt add-on renewed
            os.replace(staged[1], keyfile)
            os.replace(staged[0], certfile)
            await manager.check()
            second = await peer_fingerprint(port, cafile)
            assert second != first and announced == [second]

            half = home_assistant.pair(tmp_path / "half")  # a new certificate without its key
            os.replace(half[0], certfile)
            await manager.check()
            assert manager.error is not None and str(keyfile) in manager.error
            assert await peer_fingerprint(port, cafile) == second, (
                "a bad replacement must not be served"
            )
            assert announced == [second]
    finally:
        await manager.stop()
    assert not (tmp_path / "data").exists(), "brought files need no local CA"


# --- brought-your-own files ---------------------------------------------------------------------


def test_home_assistant_style_files_are_used_instead_of_the_local_ca(tmp_path: Path) -> None:
    ssl_dir = tmp_path / "ssl"
    ssl_dir.mkdir()
    certfile, keyfile = ssl_dir / "fullchain.pem", ssl_dir / "privkey.pem"
    made = openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        keyfile,
        "-out",
        certfile,
        "-days",
        "90",
        "-subj",
        "/CN=homeassistant.local",
        "-addext",
        "subjectAltName=DNS:localhost",
    )
    assert made.returncode == 0, made.stderr
    keyfile.chmod(0o600)
    store = make_store(tmp_path, certfile=certfile, keyfile=keyfile)
    store.ensure()
    assert store.server_cert_path == certfile and store.server_key_path == keyfile
    assert [info.name for info in store.status()] == ["server"]
    assert store.fingerprint() == openssl_fingerprint(certfile)
    assert not store.needs_renewal()
    with pytest.raises(CertError, match="renew it where it comes from"):
        store.renew()
    assert server_ssl_context(store) is not None


def _damage_byo(case: str, certfile: Path, keyfile: Path, ca: OtherCA) -> Path:
    """Break a brought pair the way ``case`` says; returns the file the error must name."""
    if case == "key does not match":
        keyfile.write_bytes(pem_key(ec.generate_private_key(ec.SECP256R1())))
        return keyfile
    if case == "expired":
        ca.pair(certfile.parent, issued=utcnow() - dt.timedelta(days=100))
        return certfile
    if case == "not yet valid":
        ca.pair(certfile.parent, issued=utcnow() + dt.timedelta(days=2))
        return certfile
    if case == "missing certificate":
        certfile.unlink()
        return certfile
    if case == "unreadable key":  # root reads any mode; a directory in its place it cannot read
        keyfile.unlink()
        keyfile.mkdir()
        return keyfile
    if case == "truncated certificate":
        certfile.write_bytes(certfile.read_bytes()[:300])
        return certfile
    if case == "truncated key":
        keyfile.write_bytes(keyfile.read_bytes()[:100])
        return keyfile
    if case == "encrypted key":
        key = serialization.load_pem_private_key(keyfile.read_bytes(), None)
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        return keyfile
    raise AssertionError(case)


BYO_CASES = {
    "key does not match": "does not match",
    "expired": "expired on",
    "not yet valid": "check the system clock",
    "missing certificate": "does not exist",
    "unreadable key": "cannot read",
    "truncated certificate": "truncated",
    "truncated key": "truncated",
    "encrypted key": "encrypted",
}


@pytest.mark.parametrize("case", list(BYO_CASES))
def test_bad_brought_files_are_a_clear_error_naming_the_file(tmp_path: Path, case: str) -> None:
    ca = OtherCA.create()
    certfile, keyfile = ca.pair(tmp_path / "ssl")
    named = _damage_byo(case, certfile, keyfile, ca)
    store = make_store(tmp_path, certfile=certfile, keyfile=keyfile)
    with pytest.raises(CertError) as error:
        store.ensure()
    assert str(named) in str(error.value) and BYO_CASES[case] in str(error.value)
    assert "Traceback" not in str(error.value)
    assert not store.directory.exists()


def test_a_world_readable_brought_key_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certfile, keyfile = OtherCA.create().pair(tmp_path / "ssl")
    keyfile.chmod(0o644)
    store = make_store(tmp_path, certfile=certfile, keyfile=keyfile)
    with caplog.at_level(logging.WARNING, logger="argentic_edge.certs.issuing"):
        store.ensure()
        store.ensure()  # the hourly check
    warned = [r.getMessage() for r in caplog.records if str(keyfile) in r.getMessage()]
    assert len(warned) == 1 and "644" in warned[0] and "readable by every user" in warned[0]
    assert mode(keyfile) == 0o644, "a brought file is not ours to change"


# --- our own files: bad input --------------------------------------------------------------------


def _damage_ca(case: str, store: CertStore) -> Path:
    if case == "truncated ca.pem":
        store.ca_cert_path.write_bytes(store.ca_cert_path.read_bytes()[:200])
        return store.ca_cert_path
    if case == "truncated ca.key":
        store.ca_key_path.write_bytes(store.ca_key_path.read_bytes()[:60])
        return store.ca_key_path
    if case == "ca.key missing":
        store.ca_key_path.unlink()
        return store.ca_key_path
    if case == "ca.key of another CA":
        store.ca_key_path.write_bytes(pem_key(ec.generate_private_key(ec.SECP256R1())))
        return store.ca_key_path
    if case == "CA not yet valid (clock behind)":
        key = ec.generate_private_key(ec.SECP256R1())
        store.ca_key_path.write_bytes(pem_key(key))
        ca = make_ca(key, NODE, dt.timedelta(days=3650), utcnow() + dt.timedelta(days=30))
        store.ca_cert_path.write_bytes(pem_cert(ca))
        return store.ca_cert_path
    raise AssertionError(case)


CA_CASES = {
    "truncated ca.pem": "truncated",
    "truncated ca.key": "truncated",
    "ca.key missing": "the CA key is missing",
    "ca.key of another CA": "does not match",
    "CA not yet valid (clock behind)": "check the system clock",
}


@pytest.mark.parametrize("case", list(CA_CASES))
def test_a_bad_ca_is_an_error_and_nothing_is_overwritten(tmp_path: Path, case: str) -> None:
    store = make_store(tmp_path)
    store.ensure()
    named = _damage_ca(case, store)
    before = snapshot(store.directory)
    for attempt in (
        store.ensure,
        lambda: store.renew(force=True),
        lambda: store.issue("agent", client=True),
    ):
        with pytest.raises(CertError) as error:
            attempt()
        assert str(named) in str(error.value) and CA_CASES[case] in str(error.value)
    assert snapshot(store.directory) == before


SERVER_DAMAGE = {
    "truncated server.pem": lambda s: s.server_cert_path.write_bytes(
        s.server_cert_path.read_bytes()[:200]
    ),
    "server.pem missing": lambda s: s.server_cert_path.unlink(),
    "new key, old certificate (renewal interrupted)": lambda s: s.server_key_path.write_bytes(
        pem_key(ec.generate_private_key(ec.SECP256R1()))
    ),
    "truncated server.key": lambda s: s.server_key_path.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nMIG"
    ),
}


@pytest.mark.parametrize("case", list(SERVER_DAMAGE))
def test_a_bad_server_certificate_of_ours_is_issued_again(tmp_path: Path, case: str) -> None:
    store = make_store(tmp_path)
    store.ensure()
    ca_before = (store.ca_cert_path.read_bytes(), store.ca_key_path.read_bytes())
    SERVER_DAMAGE[case](store)
    store.ensure()
    assert (store.ca_cert_path.read_bytes(), store.ca_key_path.read_bytes()) == ca_before
    assert openssl("verify", "-CAfile", store.ca_cert_path, store.server_cert_path).returncode == 0
    server_ssl_context(store)  # key and certificate match again
    assert mode(store.server_key_path) == 0o600


def test_own_keys_readable_by_others_are_tightened_to_0600(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.ensure()
    store.ca_key_path.chmod(0o644)
    store.server_key_path.chmod(0o640)
    before = snapshot(store.directory)
    store.ensure()
    assert (mode(store.ca_key_path), mode(store.server_key_path)) == (0o600, 0o600)
    assert snapshot(store.directory) == before


def test_a_read_only_directory_is_an_error_naming_the_file_and_changes_nothing(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    store.ensure()
    before = snapshot(store.directory)
    with read_only(store.directory):
        store.ensure()  # good files need no write
        assert [info.name for info in store.status()] == ["ca", "server"]
        with pytest.raises(CertError) as error:
            store.renew(force=True)
        assert str(store.server_key_path) in str(error.value) and "cannot write" in str(error.value)
        with pytest.raises(CertError, match="cannot write"):
            store.issue("agent", client=True)
    assert snapshot(store.directory) == before, "nothing overwritten, no temporary file left"


def test_a_file_where_the_directory_should_be_is_an_error_naming_it(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.directory.parent.mkdir(parents=True)
    store.directory.write_bytes(b"not a directory")
    with pytest.raises(CertError, match=f"{store.directory} is not a directory"):
        store.ensure()
    assert store.directory.read_bytes() == b"not a directory"


async def test_the_manager_survives_a_read_only_data_dir_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = CertStore(data / "certs", NODE)
    manager = CertManager(store)
    with caplog.at_level(logging.ERROR, logger="argentic_edge.certs.service"), read_only(data):
        await manager.start()
        await manager.check()
        status = manager.status()
        assert status.error and str(data / "certs") in status.error and status.errors == 2
        assert status.certificates == []
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1, "logged once"
    await manager.check()
    await manager.stop()
    assert manager.error is None
    assert [c.name for c in manager.status().certificates] == ["ca", "server"]


# --- expiry warnings -----------------------------------------------------------------------------


def test_expiry_warnings_come_once_per_threshold(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.ensure()
    server = store.status()[1]
    warnings = ExpiryWarnings()

    def at(days: float, info: object = server) -> list[tuple[str, int]]:
        return warnings.check([dataclasses.replace(info, days_left=days)])  # type: ignore[type-var]

    assert at(45) == []
    assert at(29.5) == [("server", 30)]
    assert at(20) == []
    assert at(3) == [("server", 7)]
    assert at(2) == []
    assert at(-0.1) == [("server", 0)]
    renewed = dataclasses.replace(server, fingerprint_sha256="0" * 64)
    assert at(5, renewed) == [("server", 7)], (
        "a new certificate is warned about afresh, nearest threshold only"
    )


async def test_the_manager_warns_about_a_certificate_close_to_expiry_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(tmp_path, validity_days=20)
    manager = CertManager(store)
    with caplog.at_level(logging.WARNING, logger="argentic_edge.certs.service"):
        await manager.start()
        await manager.check()
        await manager.stop()
    warned = [r.getMessage() for r in caplog.records if "expires in" in r.getMessage()]
    assert (
        len(warned) == 1 and "certificate server" in warned[0] and "expires in 20 days" in warned[0]
    )
    assert manager.status().certificates[1].days_left == pytest.approx(
        20 - 1 / 24, abs=0.01
    )  # 1 h backdated


# --- certs issue ---------------------------------------------------------------------------------


def test_issue_makes_server_and_client_bundles_for_the_local_ca(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    server = store.issue("mqtt.lan", client=False, sans=["10.1.2.3", "broker.example"])
    client = store.issue("agent-1", client=True, out_dir=tmp_path / "agent")
    assert client == {
        "cert": tmp_path / "agent" / "agent-1.pem",
        "key": tmp_path / "agent" / "agent-1.key",
        "ca": tmp_path / "agent" / "ca.pem",
    }
    assert sorted(p.name for p in (tmp_path / "agent").iterdir()) == [
        "agent-1.key",
        "agent-1.pem",
        "ca.pem",
    ]
    for bundle, purpose in ((server, "sslserver"), (client, "sslclient")):
        assert mode(bundle["key"]) == 0o600
        assert (
            openssl(
                "verify", "-CAfile", bundle["ca"], "-purpose", purpose, bundle["cert"]
            ).returncode
            == 0
        )
    assert (
        openssl(
            "verify", "-CAfile", server["ca"], "-purpose", "sslclient", server["cert"]
        ).returncode
        != 0
    )
    sans = {info.name: info.sans for info in store.status()}["issued/mqtt.lan"]
    assert set(sans) == {"mqtt.lan", "localhost", "127.0.0.1", "10.1.2.3", "broker.example"}
    with pytest.raises(CertError, match="'ca'"):
        store.issue("ca", client=True)
    with pytest.raises(CertError, match="'not a name'"):
        store.issue("x", client=False, sans=["not a name"])


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_init_show_renew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", data, "--node-name", "kitchen-pi") == 0
    out = capsys.readouterr().out
    assert str(data / "certs" / "ca.pem") in out

    assert run_cli("show", "--data-dir", data, "--node-name", "kitchen-pi") == 0
    out = capsys.readouterr().out
    fingerprint = openssl_fingerprint(data / "certs" / "server.pem")
    assert fingerprint in out and "kitchen-pi.local" in out and "days left" in out

    assert run_cli("show", "--json", "--data-dir", data, "--node-name", "kitchen-pi") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in shown] == ["ca", "server"]
    assert shown[1]["fingerprint_sha256"] == fingerprint and shown[0]["is_ca"] is True
    assert 396 < shown[1]["days_left"] <= 397

    assert run_cli("renew", "--data-dir", data, "--node-name", "kitchen-pi") == 0
    assert "not due" in capsys.readouterr().out
    assert run_cli("renew", "--force", "--data-dir", data, "--node-name", "kitchen-pi") == 0
    assert "renewed" in capsys.readouterr().out
    assert openssl_fingerprint(data / "certs" / "server.pem") != fingerprint


def test_cli_errors_are_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert run_cli("show", "--data-dir", data) == 1
    assert "run `argentic-edge certs init`" in capsys.readouterr().err

    assert run_cli("init", "--data-dir", data) == 0
    ca = data / "certs" / "ca.pem"
    good_ca = ca.read_bytes()
    ca.write_bytes(good_ca[:100])
    capsys.readouterr()
    for command in (["show"], ["show", "--json"], ["renew"], ["issue", "agent", "--client"]):
        assert run_cli(*command, "--data-dir", data) == 1
        captured = capsys.readouterr()
        assert str(ca) in captured.err and "Traceback" not in captured.err
        assert captured.err.count("\n") == 1

    assert run_cli("issue", "no spaces", "--data-dir", data) == 1
    assert "'no spaces'" in capsys.readouterr().err
    ca.write_bytes(good_ca)
    (tmp_path / "taken").write_text("a file")
    assert (
        run_cli("issue", "agent", "--client", "--out", tmp_path / "taken", "--data-dir", data) == 1
    )
    assert f"{tmp_path / 'taken'} is not a directory" in capsys.readouterr().err
    byo = [
        "--certfile",
        tmp_path / "ssl" / "fullchain.pem",
        "--keyfile",
        tmp_path / "ssl" / "privkey.pem",
    ]
    assert run_cli("init", *byo, "--data-dir", data) == 1
    assert str(tmp_path / "ssl" / "fullchain.pem") in capsys.readouterr().err


def test_certificate_files_keep_the_configurations_bounds(tmp_path: Path) -> None:
    # config.py holds the one check: a CA beyond 100 years, or a renewal window under 1 % (or
    # above 99 %) of a certificate's life, is refused by the files as by the configuration.
    with pytest.raises(CertError, match=re.escape("certificates.ca_validity_days")):
        make_store(tmp_path, ca_validity_days=36501)
    with pytest.raises(CertError, match=re.escape("certificates.renewal_window")):
        make_store(tmp_path, renewal_window=0.001)
    with pytest.raises(CertError, match=re.escape("certificates.renewal_window")):
        make_store(tmp_path, renewal_window=0.995)
