"""``argentic-edge certs init | show | issue NAME | renew``: the certificate store from a shell.

Handlers return an exit code: 0 when done, 1 with one clear line on stderr when a certificate
problem stops them (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from argentic_edge.certs.files import CertError, CertInfo
from argentic_edge.config import default_data_dir, find_config_file, load_config
from argentic_edge.storage import certs_dir

if TYPE_CHECKING:  # cryptography loads when a certs command runs, not for every command
    from argentic_edge.certs.issuing import CertStore


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``certs`` command tree to the main CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        help="take data_dir, node_name and certificates from this file (default: the file the "
        "web editor saved, else the embedded defaults); the options below override it",
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory; certificates live in DIR/certs (default: the configuration's "
        f"data_dir, {default_data_dir()} unless set)",
    )
    common.add_argument(
        "--node-name",
        default=None,
        help="this node's name (default: the configuration's node_name)",
    )
    common.add_argument(
        "--certfile", default=None, help="your own server certificate (e.g. /ssl/fullchain.pem)"
    )
    common.add_argument("--keyfile", default=None, help="its private key (e.g. /ssl/privkey.pem)")

    certs = subparsers.add_parser("certs", help="local CA, server and client certificates")
    commands = certs.add_subparsers(dest="certs_command", metavar="COMMAND", required=True)

    init = commands.add_parser(
        "init", parents=[common], help="create the local CA and this node's server certificate"
    )
    init.set_defaults(func=_handler(_init))

    show = commands.add_parser(
        "show", parents=[common], help="list certificates with SANs, fingerprint and expiry"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=_handler(_show))

    issue = commands.add_parser(
        "issue",
        parents=[common],
        help="make a certificate bundle (cert, key, CA) for an agent or a broker",
    )
    issue.add_argument("name", metavar="NAME", help="common name, also the file names")
    issue.add_argument(
        "--client", action="store_true", help="a client certificate (default: a server one)"
    )
    issue.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: DATA_DIR/certs/issued/NAME)",
    )
    issue.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="an extra DNS name or IP address (repeatable); "
        "servers always get NAME, localhost, 127.0.0.1",
    )
    issue.set_defaults(func=_handler(_issue))

    renew = commands.add_parser(
        "renew", parents=[common], help="issue the server certificate again when it is due"
    )
    renew.add_argument("--force", action="store_true", help="renew even when it is not due")
    renew.set_defaults(func=_handler(_renew))


def _handler(
    run: Callable[[CertStore, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Build the store from the configuration (found as every command finds it) and the common
    options, which win; a CertError or OSError becomes exit code 1 (a ConfigError too, in main)."""

    def handle(args: argparse.Namespace) -> int:
        from argentic_edge.certs.issuing import CertStore

        config = load_config(find_config_file(args.config))
        certificates = config.certificates
        try:
            store = CertStore(
                certs_dir(args.data_dir or config.data_path),
                args.node_name or config.node_name,
                certfile=args.certfile or certificates.certfile,
                keyfile=args.keyfile or certificates.keyfile,
                validity_days=certificates.validity_days,
                ca_validity_days=certificates.ca_validity_days,
                renewal_window=certificates.renewal_window,
            )
            return run(store, args)
        except CertError as exc:
            sys.stderr.write(f"argentic-edge certs: {exc}\n")
            return 1
        except OSError as exc:  # e.g. an unreadable issued/ directory while listing
            sys.stderr.write(f"argentic-edge certs: {exc.filename}: {exc.strerror}\n")
            return 1

    return handle


def _init(store: CertStore, args: argparse.Namespace) -> int:
    store.ensure()
    if not store.brought:
        sys.stdout.write(f"CA certificate (give it to clients): {store.ca_cert_path}\n")
    sys.stdout.write(f"server certificate: {store.server_cert_path}\n")
    sys.stdout.write(f"server key:         {store.server_key_path}\n")
    sys.stdout.write(f"sha256:             {store.fingerprint()}\n")
    return 0


def _show(store: CertStore, args: argparse.Namespace) -> int:
    infos = store.status()
    if args.json:
        sys.stdout.write(json.dumps([info.to_dict() for info in infos], indent=2) + "\n")
        return 0
    if not infos:
        sys.stderr.write(
            f"argentic-edge certs: no certificates in {store.directory}; run `argentic-edge certs init`\n"
        )
        return 1
    sys.stdout.write("\n".join(_describe(info) for info in infos))
    return 0


def _describe(info: CertInfo) -> str:
    return (
        f"{info.name}: {info.path}\n"
        f"  subject  {info.subject}\n"
        f"  SANs     {', '.join(info.sans) or '-'}\n"
        f"  issuer   {info.issuer}{'  (CA)' if info.is_ca else ''}\n"
        f"  sha256   {info.fingerprint_sha256}\n"
        f"  expires  {info.not_after:%Y-%m-%d %H:%M} UTC ({_days(info.days_left)})\n"
    )


def _days(days_left: float) -> str:
    return f"{days_left:.0f} days left" if days_left > 0 else "EXPIRED"


def _issue(store: CertStore, args: argparse.Namespace) -> int:
    paths = store.issue(args.name, client=args.client, out_dir=args.out, sans=args.san)
    kind = "client" if args.client else "server"
    sys.stdout.write(f"{kind} certificate for {args.name}:\n")
    sys.stdout.write("".join(f"  {what:<5} {path}\n" for what, path in paths.items()))
    return 0


def _renew(store: CertStore, args: argparse.Namespace) -> int:
    renewed = store.renew(force=args.force)
    info = next(info for info in store.status() if info.name == "server")
    if renewed:
        sys.stdout.write(
            f"renewed {info.path}: sha256 {info.fingerprint_sha256}, {_days(info.days_left)}\n"
        )
    else:
        sys.stdout.write(
            f"not due: {info.path} has {_days(info.days_left)} (--force renews anyway)\n"
        )
    return 0
