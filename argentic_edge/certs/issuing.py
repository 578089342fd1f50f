"""Certificates on disk: a local CA, this node's server certificate, bundles for agents and brokers.

Why a local CA: agents on a LAN reach the appliance by host name, ``<host>.local`` or IP, and no
public CA signs those names. One CA kept in the data directory lets every client trust one file
(``ca.pem``) while the server certificate renews itself underneath. Users who already have a
certificate (Home Assistant's ``/ssl/fullchain.pem``) bring it instead.

Two kinds of files, two policies:
- Precious: the CA and brought-your-own files. A problem with them (damaged, mismatched, expired,
  not yet valid) is a :class:`CertError` naming the file; they are never replaced automatically,
  because a new CA would silently break every client that trusts the old one.
- Disposable: the server certificate and key the local CA issued. Missing, damaged, mismatched,
  expired, due for renewal or not covering this node's names, they are simply issued again.

Every file is written with :func:`argentic_edge.storage.atomic_write` (keys 0600, certificates
0644), so a reader sees the old file or the new one, never half of either. A new server key is
written before its certificate; a crash in between leaves a key/certificate mismatch, which the
next :meth:`CertStore.ensure` repairs by issuing again.

The running appliance does not import this module: its certificate service runs it in a child
process (:mod:`argentic_edge.certs.worker`); :mod:`argentic_edge.certs.files` says why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import re
import socket
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from argentic_edge.certs.files import CertError, CertFiles, CertInfo, utcnow
from argentic_edge.storage import atomic_write, describe_os_error

log = logging.getLogger(__name__)

KEY_MODE = 0o600
CERT_MODE = 0o644
ORGANIZATION = "argentic-edge"
# not_before lies a little in the past so that clients whose clocks lag accept a fresh certificate.
_MAX_BACKDATE = dt.timedelta(hours=1)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as 64 lowercase hex digits (the mDNS TXT ``tls`` value)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(
    name: str, path: Path, cert: x509.Certificate, now: dt.datetime | None = None
) -> CertInfo:
    """The facts a user reads about ``cert`` (stored at ``path``), days left counted from ``now``."""
    now = now or utcnow()
    return CertInfo(
        name=name,
        path=path,
        subject=cert.subject.rfc4514_string(),
        sans=_sans(cert),
        issuer=cert.issuer.rfc4514_string(),
        fingerprint_sha256=fingerprint_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=(cert.not_valid_after_utc - now).total_seconds() / 86400,
        is_ca=_is_ca(cert),
    )


# --- names -------------------------------------------------------------------------------------


def is_dns_name(name: str) -> bool:
    return len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split("."))


def parse_san(value: str) -> x509.GeneralName:
    """A subjectAltName from text: an IP address becomes an IP SAN, a host name a DNS SAN."""
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not is_dns_name(value):
        raise CertError(
            f"subject alternative name {value!r}: expected a host name or an IP address"
        )
    return x509.DNSName(value.lower())


def local_ips() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of every interface except IPv6 link-local ones (a SAN cannot carry a scope)."""
    import ifaddr  # zeroconf's dependency; imported here so a plain import of certs stays light

    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for adapter in ifaddr.get_adapters():
        for entry in adapter.ips:
            address = ipaddress.ip_address(entry.ip if isinstance(entry.ip, str) else entry.ip[0])
            if not address.is_link_local:
                found.add(address)
    return sorted(found, key=lambda a: (a.version, a))


def node_sans(node_name: str) -> tuple[str, ...]:
    """Names a client may use for this node: host name, ``<host>.local``, localhost, every IP."""
    hostname = socket.gethostname()
    names = [
        hostname,
        f"{hostname.split('.')[0]}.local",
        node_name,
        f"{node_name}.local",
        "localhost",
    ]
    dns = [name.lower() for name in dict.fromkeys(names) if is_dns_name(name)]
    return (*dict.fromkeys(dns), *(str(ip) for ip in local_ips()))


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return (
        *ext.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress)),
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# --- reading and checking files ----------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertError(f"{path}: the {what} file does not exist") from None
    except OSError as exc:
        raise CertError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file, leaf first (a fullchain file holds the chain after it)."""
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertError(f"{path}: not a PEM certificate (damaged or truncated?)") from None


def load_private_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(
            f"{path}: the private key is encrypted; give an unencrypted key file"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{path}: not a PEM private key (damaged or truncated?)") from None
    if not isinstance(key, typing.get_args(CertificateIssuerPrivateKeyTypes)):
        raise CertError(f"{path}: unsupported private key type {type(key).__name__}")
    return typing.cast(CertificateIssuerPrivateKeyTypes, key)


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def check_pair(cert: x509.Certificate, cert_path: Path, key: Any, key_path: Path) -> None:
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise CertError(f"{key_path}: this private key does not match the certificate {cert_path}")


def check_dates(cert: x509.Certificate, path: Path, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertError(
            f"{path}: the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            f"but the clock says {now:%Y-%m-%d %H:%M} UTC; check the system clock"
        )
    if now >= cert.not_valid_after_utc:
        raise CertError(
            f"{path}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(path, data, mode)
    except OSError as exc:
        if path.parent.exists() and not path.parent.is_dir():
            raise CertError(f"{path}: cannot write: {path.parent} is not a directory") from None
        raise CertError(f"{path}: cannot write: {describe_os_error(exc)}") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- building certificates ---------------------------------------------------------------------


def _span(now: dt.datetime, validity: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """not_before/not_after for a certificate issued now: exactly ``validity`` apart, whole seconds."""
    start = (now - min(_MAX_BACKDATE, validity / 100)).replace(microsecond=0)
    return start, start + validity


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, common_name[:64]
            ),  # X.509's upper bound for a CN
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """ECDSA keys sign: handshakes (digital_signature) and, for the CA, certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    key: CertificateIssuerPrivateKeyTypes, node_name: str, validity: dt.timedelta, now: dt.datetime
) -> x509.Certificate:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    name = _name(f"argentic-edge CA {node_name}")
    not_before, not_after = _span(now, validity)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: Iterable[x509.GeneralName],
    *,
    client: bool,
    validity: dt.timedelta,
    now: dt.datetime,
) -> x509.Certificate:
    """A server (serverAuth) or client (clientAuth) certificate signed by the CA, never outliving it."""
    not_before, not_after = _span(now, validity)
    public = key.public_key()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(not_before, ca_cert.not_valid_before_utc))
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    general_names = list(dict.fromkeys(sans))
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --- the store ---------------------------------------------------------------------------------


class CertStore(CertFiles):
    """Issues and checks the files :class:`CertFiles` describes (see there for the layout)."""

    def __init__(self, directory: str | os.PathLike[str], node_name: str, **options: Any) -> None:
        super().__init__(directory, node_name, **options)
        # Conditions nobody can fix from here, already logged; the worker carries them across runs.
        self.warned: set[str] = set()

    def ensure(self) -> None:
        """Make the files ready to serve: create what is missing, re-issue a disposable server
        certificate that is not good (or due), check a brought one. Raises CertError otherwise."""
        if self._byo:
            self._check_brought(utcnow())
        else:
            self.renew()

    def renew(self, force: bool = False) -> bool:
        """Issue the server certificate again when it is due (or ``force``); True if it was."""
        if self._byo:
            raise CertError(
                f"{self._byo[0]}: this certificate is brought by you; renew it where it comes from "
                "(for example the Let's Encrypt add-on), argentic-edge only reloads it"
            )
        now = utcnow()
        ca_cert, ca_key = self._ensure_ca(now)
        reason = "renewal was forced" if force else self._server_reason(ca_cert, now)
        if reason is None:
            return False
        self._issue_server(ca_cert, ca_key, reason, now)
        return True

    def needs_renewal(self, now: dt.datetime | None = None) -> bool:
        """Whether :meth:`renew` would issue now: never for a brought certificate."""
        if self._byo:
            return False
        try:
            ca_cert = load_certificates(self.ca_cert_path)[0]
        except CertError:
            return True
        return self._server_reason(ca_cert, now or utcnow()) is not None

    def issue(
        self,
        name: str,
        *,
        client: bool,
        out_dir: str | os.PathLike[str] | None = None,
        sans: Iterable[str] = (),
    ) -> dict[str, Path]:
        """A certificate bundle for an agent (client) or a broker listener (server), from the local CA.

        Server certificates cover ``name`` (when it is a host name), localhost and 127.0.0.1 plus
        ``sans``; client certificates ``name`` plus ``sans``. Returns the paths of ``cert``,
        ``key`` and ``ca``; the default directory is ``issued/<name>`` in the store.
        """
        if not _NAME.fullmatch(name) or name == "ca":
            raise CertError(
                f"certificate name {name!r}: use 1-63 letters, digits, '.', '_' or '-' (and not 'ca')"
            )
        extra = [parse_san(value) for value in sans]
        own = [parse_san(name)] if is_dns_name(name) else []
        defaults = (
            []
            if client
            else [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        now = utcnow()
        ca_cert, ca_key = self._ensure_ca(now)
        key = _new_key()
        cert = make_leaf(
            ca_cert,
            ca_key,
            key,
            name,
            [*own, *defaults, *extra],
            client=client,
            validity=self.validity,
            now=now,
        )
        out = Path(out_dir) if out_dir is not None else self.issued_dir / name
        paths = {"cert": out / f"{name}.pem", "key": out / f"{name}.key", "ca": out / "ca.pem"}
        _write(paths["key"], _key_pem(key), KEY_MODE)
        _write(paths["cert"], _cert_pem(cert), CERT_MODE)
        _write(paths["ca"], _cert_pem(ca_cert), CERT_MODE)
        log.info(
            "issued %s certificate %s (sha256 %s, expires %s) in %s",
            "client" if client else "server",
            name,
            fingerprint_sha256(cert),
            cert.not_valid_after_utc.date(),
            out,
        )
        return paths

    def status(self) -> list[CertInfo]:
        """Every certificate this node has: CA, server, then issued bundles in the store."""
        now = utcnow()
        found = [("ca", self.ca_cert_path), ("server", self.server_cert_path)]
        if self.issued_dir.is_dir():
            found += [
                (f"issued/{d.name}", d / f"{d.name}.pem") for d in sorted(self.issued_dir.iterdir())
            ]
        # A brought certificate that is missing is an error to report, our own ones just not made yet.
        wanted = [
            (name, path)
            for name, path in found
            if path.exists() or (self._byo and name == "server")
        ]
        return [describe(name, path, load_certificates(path)[0], now) for name, path in wanted]

    def fingerprint(self) -> str:
        """SHA-256 of the server certificate in use (hex), for the mDNS TXT ``tls`` key."""
        return fingerprint_sha256(load_certificates(self.server_cert_path)[0])

    # -- internals ----------------------------------------------------------------------------

    def _tighten(self, path: Path) -> None:
        """Our own key files are 0600; a looser mode (someone copied or chmodded them) is fixed."""
        mode = _key_mode(path)
        if mode is None or not mode & 0o077:
            return
        try:
            os.chmod(path, KEY_MODE)
        except OSError as exc:
            self._warn_once(
                f"{path}: private key is readable by others (mode {mode:o}) and cannot be set "
                f"to 0600: {exc.strerror}"
            )
            return
        log.warning("%s: private key was readable by others (mode %o); set to 0600", path, mode)

    def _warn_if_exposed(self, path: Path) -> None:
        """A brought key is not ours to chmod (Home Assistant maps /ssl read-only): say so instead."""
        mode = _key_mode(path)
        if mode is not None and mode & 0o004:
            self._warn_once(
                f"{path}: private key is readable by every user (mode {mode:o}); chmod 600 it"
            )

    def _warn_once(self, message: str) -> None:
        """Checks run every hour; a condition nobody can fix from here is logged only the first time."""
        if message not in self.warned:
            self.warned.add(message)
            log.warning("%s", message)

    def _check_brought(self, now: dt.datetime) -> None:
        cert_path, key_path = self.server_cert_path, self.server_key_path
        cert = load_certificates(cert_path)[0]
        key = load_private_key(key_path)
        check_pair(cert, cert_path, key, key_path)
        check_dates(cert, cert_path, now)
        self._warn_if_exposed(key_path)

    def _ensure_ca(
        self, now: dt.datetime
    ) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
        cert_path, key_path = self.ca_cert_path, self.ca_key_path
        if cert_path.exists() and not key_path.exists():
            raise CertError(
                f"{key_path}: the CA key is missing while {cert_path} exists; restore it, or remove "
                f"{cert_path} to create a new CA (every client must then trust the new ca.pem)"
            )
        key: CertificateIssuerPrivateKeyTypes
        if not key_path.exists():
            key = _new_key()
            _write(key_path, _key_pem(key), KEY_MODE)
            log.info("created the local CA key %s", key_path)
        else:
            key = load_private_key(key_path)
            self._tighten(key_path)
        if not cert_path.exists():
            cert = make_ca(key, self.node_name, self.ca_validity, now)
            _write(cert_path, _cert_pem(cert), CERT_MODE)
            log.info("created the local CA %s (sha256 %s)", cert_path, fingerprint_sha256(cert))
            return cert, key
        cert = load_certificates(cert_path)[0]
        check_pair(cert, cert_path, key, key_path)
        if not _is_ca(cert):
            raise CertError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
        check_dates(cert, cert_path, now)
        return cert, key

    def _server_reason(self, ca_cert: x509.Certificate, now: dt.datetime) -> str | None:
        """Why the disposable server certificate must be issued again, or None when it is good."""
        cert_path, key_path = self.server_cert_path, self.server_key_path
        try:
            cert = load_certificates(cert_path)[0]
            key = load_private_key(key_path)
            check_pair(cert, cert_path, key, key_path)
        except CertError as exc:
            return str(exc)
        self._tighten(key_path)
        if not _signed_by(cert, ca_cert):
            return f"{cert_path}: not issued by the local CA {self.ca_cert_path}"
        if now < cert.not_valid_before_utc:
            return f"{cert_path}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        renew_at = not_after - (not_after - not_before) * self.renewal_window
        if now >= renew_at:
            return f"{cert_path}: due for renewal (expires {not_after:%Y-%m-%d %H:%M:%S} UTC)"
        missing = [name for name in node_sans(self.node_name) if name not in _sans(cert)]
        if missing:
            return f"{cert_path}: does not cover {', '.join(missing)}"
        return None

    def _issue_server(
        self,
        ca_cert: x509.Certificate,
        ca_key: CertificateIssuerPrivateKeyTypes,
        reason: str,
        now: dt.datetime,
    ) -> None:
        key = _new_key()
        sans = [parse_san(name) for name in node_sans(self.node_name)]
        cert = make_leaf(
            ca_cert,
            ca_key,
            key,
            self.node_name,
            sans,
            client=False,
            validity=self.validity,
            now=now,
        )
        _write(self.server_key_path, _key_pem(key), KEY_MODE)
        _write(self.server_cert_path, _cert_pem(cert), CERT_MODE)
        log.info(
            "issued the server certificate %s (sha256 %s, expires %s): %s",
            self.server_cert_path,
            fingerprint_sha256(cert),
            cert.not_valid_after_utc.isoformat(),
            reason,
        )
