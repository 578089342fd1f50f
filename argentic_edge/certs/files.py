"""Where one node's certificate files live, the rules they are issued by, and what the running
appliance knows of them: all without the cryptography library.

Why apart from :mod:`argentic_edge.certs.issuing`: once imported, cryptography stays resident at about
12 MiB, a fifth of the appliance's memory budget on a Raspberry Pi, yet the running appliance
needs it for a fraction of a second an hour. The long-running process holds this module (paths,
TLS contexts, the facts the status page shows); issuing and checking run in a short-lived child
(:mod:`argentic_edge.certs.worker`) that imports cryptography and exits. As a side effect the CA's
private key is never loaded into the process that faces the network.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.config import MAX_VALIDITY_DAYS, CertificatesConfig, field_problems
from argentic_edge.errors import EdgeError


class CertError(EdgeError):
    """A certificate problem a user can act on; the message names the file and what is wrong."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CertInfo:
    """What a user (status page, ``certs show``, metrics) needs to know about one certificate."""

    name: str
    path: Path
    subject: str
    sans: tuple[str, ...]
    issuer: str
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: float
    is_ca: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "subject": self.subject,
            "sans": list(self.sans),
            "issuer": self.issuer,
            "fingerprint_sha256": self.fingerprint_sha256,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left, 3),
            "is_ca": self.is_ca,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], now: dt.datetime | None = None) -> CertInfo:
        """The inverse of :meth:`to_dict`; ``days_left`` is counted again from ``now``."""
        not_after = dt.datetime.fromisoformat(data["not_after"])
        return cls(
            name=data["name"],
            path=Path(data["path"]),
            subject=data["subject"],
            sans=tuple(data["sans"]),
            issuer=data["issuer"],
            fingerprint_sha256=data["fingerprint_sha256"],
            not_before=dt.datetime.fromisoformat(data["not_before"]),
            not_after=not_after,
            days_left=(not_after - (now or utcnow())).total_seconds() / 86400,
            is_ca=bool(data["is_ca"]),
        )


class CertFiles:
    """The certificate files of one node in ``directory`` (normally ``<data_dir>/certs``).

    Layout: ``ca.pem``/``ca.key`` (local CA), ``server.pem``/``server.key`` (this node), and
    ``issued/<name>/{<name>.pem,<name>.key,ca.pem}`` for bundles. With ``certfile``/``keyfile``
    the server certificate is the user's own and the local CA is only created when a bundle is
    issued.

    ``validity_days`` may be fractional (tests use seconds-long certificates); ``renewal_window``
    is the last fraction of a server certificate's life in which it is issued again.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        node_name: str,
        *,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        validity_days: float = MAX_VALIDITY_DAYS,
        ca_validity_days: float = 3650,
        renewal_window: float = 1 / 3,
    ) -> None:
        if not node_name:
            raise CertError("node_name: empty; the server certificate needs a name")
        if (certfile is None) != (keyfile is None):
            raise CertError(
                "certificates.certfile and certificates.keyfile go together: set both or neither"
            )
        problems = field_problems(
            CertificatesConfig,
            {
                "validity_days": validity_days,
                "ca_validity_days": ca_validity_days,
                "renewal_window": renewal_window,
            },
            "certificates",
        )
        if problems:
            raise CertError("; ".join(map(str, problems)))
        self.directory = Path(directory)
        self.node_name = node_name
        self._byo = (
            (Path(certfile), Path(keyfile))
            if certfile is not None and keyfile is not None
            else None
        )
        self.validity_days = validity_days
        self.ca_validity_days = ca_validity_days
        self.renewal_window = renewal_window

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments as JSON-able values: how the worker builds the same files."""
        return {
            "directory": str(self.directory),
            "node_name": self.node_name,
            "certfile": str(self._byo[0]) if self._byo else None,
            "keyfile": str(self._byo[1]) if self._byo else None,
            "validity_days": self.validity_days,
            "ca_validity_days": self.ca_validity_days,
            "renewal_window": self.renewal_window,
        }

    @property
    def validity(self) -> dt.timedelta:
        return dt.timedelta(days=self.validity_days)

    @property
    def ca_validity(self) -> dt.timedelta:
        return dt.timedelta(days=self.ca_validity_days)

    @property
    def brought(self) -> bool:
        """True when the server certificate is the user's own (``certfile``/``keyfile``)."""
        return self._byo is not None

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self._byo[0] if self._byo else self.directory / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self._byo[1] if self._byo else self.directory / "server.key"

    @property
    def issued_dir(self) -> Path:
        return self.directory / "issued"


def load_server_chain(context: ssl.SSLContext, files: CertFiles) -> None:
    """(Re)load the node's server certificate into ``context``.

    OpenSSL copies the certificate into each connection when it starts, so loading again on the
    same context changes new handshakes only; established connections keep theirs.
    """
    try:
        context.load_cert_chain(files.server_cert_path, files.server_key_path)
    except (OSError, ssl.SSLError) as exc:
        raise CertError(
            f"{files.server_cert_path} with {files.server_key_path}: cannot be loaded for TLS: {exc}"
        ) from None


def server_ssl_context(files: CertFiles) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) with the node's certificate, reloadable in place."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_server_chain(context, files)
    return context
