"""The seed's ``tls_params`` as an SSLContext, and what a failed TCP/TLS connection means, for
every uplink protocol."""

from __future__ import annotations

import logging
import socket
import ssl
import warnings

from argentic_edge.bridge.link import LinkError
from argentic_edge.config import TlsParams

log = logging.getLogger(__name__)

_TLS_VERSIONS = {
    "PROTOCOL_TLS": None,
    "PROTOCOL_TLS_CLIENT": None,
    "PROTOCOL_TLSv1": ssl.TLSVersion.TLSv1,
    "PROTOCOL_TLSv1_1": ssl.TLSVersion.TLSv1_1,
    "PROTOCOL_TLSv1_2": ssl.TLSVersion.TLSv1_2,
    "PROTOCOL_TLSv1_3": ssl.TLSVersion.TLSv1_3,
}


def tls_context(params: TlsParams, where: str = "bridge.mqtt.tls_params") -> ssl.SSLContext:
    """An SSLContext from the seed's ``tls_params``; file problems name the key and the file.

    ``tls_version`` pins the protocol version the way the old ``ssl.PROTOCOL_TLSv1_2`` constants
    did (minimum = maximum); ``PROTOCOL_TLS`` and ``PROTOCOL_TLS_CLIENT`` negotiate the best one.
    In client mode ``CERT_OPTIONAL`` verifies like ``CERT_REQUIRED`` (Python's ssl documents so).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    version = _TLS_VERSIONS[params.tls_version]
    if version is not None:
        if version < ssl.TLSVersion.TLSv1_2:
            log.warning(
                "uplink: tls_version %s is obsolete and most OpenSSL builds refuse it",
                params.tls_version,
            )
        with warnings.catch_warnings():  # the deprecation is said above, in the user's terms
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
    if params.cert_reqs == "CERT_NONE":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = getattr(ssl, params.cert_reqs)
        try:
            if params.ca_certs:
                context.load_verify_locations(params.ca_certs)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise _file_error(where, "ca_certs", params.ca_certs, exc) from None
    if params.certfile and params.keyfile:
        try:
            context.load_cert_chain(params.certfile, params.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise _file_error(
                where, "certfile/keyfile", f"{params.certfile}, {params.keyfile}", exc
            ) from None
    if params.ciphers:
        context.set_ciphers(params.ciphers)
    return context


def _file_error(where: str, key: str, path: str | None, exc: OSError) -> LinkError:
    reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
    return LinkError(f"{where}.{key}: cannot load {path!r}: {reason}")


def describe_failure(
    exc: BaseException, where: str, tls: bool = False, settings: str = "bridge.mqtt.tls_params"
) -> str:
    """A sentence for a failed TCP/TLS connection, with the likely fix; ``settings`` names the
    uplink's ``tls_params`` where the fix goes."""
    if tls and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)):
        return (
            f"{where} closed the connection during the TLS handshake "
            "(is this port a TLS listener? does it want a client certificate?)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of {where} is not trusted ({exc.verify_message}); "
            f"check {settings}.ca_certs and the broker's host name"
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (is this port a TLS listener?)" if "WRONG_VERSION_NUMBER" in str(reason) else ""
        return f"TLS handshake with {where} failed: {reason}{hint}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (is the broker running and listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name in {where}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"{where} did not answer in time"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"cannot connect to {where}: {exc}"
