"""This node's CURVE identity: the key pair in ``<data_dir>/federation``, made on first use.

A node's id is derived from its public key (``discovery.record.node_id``), so the pair is who
the node is: other nodes approve it by that id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq

from argentic_edge.bus.proxy import BusError
from argentic_edge.config import Secret
from argentic_edge.discovery.record import is_curve_key, node_id
from argentic_edge.storage import atomic_write

log = logging.getLogger(__name__)

KEY_FILE = "curve.json"


class FederationError(BusError):
    """A federation file is unusable, or a trust change is not possible as asked.

    A BusError: federation is part of the bus, and the CLI explains bus errors to the user."""


@dataclass(frozen=True)
class CurveKeys:
    """This node's CURVE key pair (Z85 text). The secret never shows in a repr or a log."""

    public: str
    secret: Secret

    @property
    def node_id(self) -> str:
        return node_id(self.public)


def load_or_create_keys(directory: Path) -> CurveKeys:
    """The key pair stored in ``directory``, created (0600, atomically) on first use.

    A damaged file is an error, not a reason to make a new pair: that would silently change the
    node's id and break every approval other nodes have made.
    """
    path = directory / KEY_FILE
    if not path.exists():
        public, secret = zmq.curve_keypair()
        document = {"public": public.decode(), "secret": secret.decode()}
        atomic_write(path, json.dumps(document, indent=2) + "\n", mode=0o600)
        log.info(
            "federation: created this node's key pair in %s (node id %s)",
            path,
            node_id(public.decode()),
        )
        return CurveKeys(public.decode(), Secret(secret.decode()))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        public, secret = document["public"], document["secret"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FederationError(
            f"{path}: unreadable key file ({type(exc).__name__}); restore it "
            "from a backup, or delete it to give this node a new id"
        ) from None
    if not (
        isinstance(public, str)
        and isinstance(secret, str)
        and is_curve_key(public)
        and is_curve_key(secret)
    ):
        raise FederationError(f"{path}: expected 'public' and 'secret' CURVE keys in Z85 form")
    if zmq.curve_public(secret.encode()).decode() != public:
        raise FederationError(f"{path}: the public key does not belong to the secret key")
    if path.stat().st_mode & 0o077:
        log.warning("federation: %s was readable by others; making it private (0600)", path)
        path.chmod(0o600)
    return CurveKeys(public, Secret(secret))
