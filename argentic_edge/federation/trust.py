"""Which peers this node trusts: the configuration's ``trusted_peers`` plus approvals made at
runtime (persisted), and the ZAP policy (which client keys may pull our traffic) they call for."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argentic_edge.config import FederationConfig
from argentic_edge.discovery.record import is_curve_key, is_node_id, node_id
from argentic_edge.federation.identity import FederationError
from argentic_edge.storage import atomic_write, describe_os_error

log = logging.getLogger(__name__)

TRUST_FILE = "trusted.json"


@dataclass(frozen=True)
class KeyPolicy:
    """Which client keys ZAP lets into the export port. Immutable: swapped, never edited, so
    the authenticator thread always reads one consistent policy."""

    keys: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        return key in self.keys or (is_curve_key(key) and node_id(key) in self.ids)

    def describe(self, key: str) -> str:
        """How a client key is named in a log line: its node id."""
        return node_id(key) if is_curve_key(key) else "?"


DENY_ALL = KeyPolicy()


@dataclass(frozen=True)
class Approval:
    """A peer approved at runtime (the web API's approve): persisted across restarts."""

    peer_id: str
    key: str | None
    name: str
    approved_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.peer_id,
            "key": self.key,
            "name": self.name,
            "approved_at": self.approved_at,
        }


class TrustStore:
    """The peers this node trusts: ``trusted_peers`` from the configuration plus approvals made
    at runtime, which live in ``<data_dir>/federation/trusted.json``.

    ``open`` mode trusts every peer found on the LAN; the connection is still encrypted and ZAP
    still admits only keys that were advertised over mDNS.
    """

    def __init__(self, config: FederationConfig, directory: Path) -> None:
        self.mode = config.trust
        self.path = directory / TRUST_FILE
        self._config_ids = frozenset(ref for ref in config.trusted_peers if is_node_id(ref))
        self._config_keys = frozenset(ref for ref in config.trusted_peers if is_curve_key(ref))
        self._approvals: dict[str, Approval] = {}

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            entries = document["approved"]
            approvals = [
                Approval(
                    entry["id"],
                    entry.get("key"),
                    str(entry.get("name", "")),
                    float(entry.get("approved_at", 0)),
                )
                for entry in entries
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FederationError(
                f"{self.path}: unreadable trust file ({type(exc).__name__}); "
                "fix or delete it (runtime approvals are lost then)"
            ) from None
        for approval in approvals:
            if is_node_id(approval.peer_id) and (
                approval.key is None or is_curve_key(approval.key)
            ):
                self._approvals[approval.peer_id] = approval
            else:
                log.warning(
                    "federation: %s: ignoring a malformed approval %r", self.path, approval.peer_id
                )

    def _save(self, approvals: dict[str, Approval]) -> None:
        """Write ``approvals``, then make them the ones in force: if the disk refuses (full,
        read-only), the trust list stays what the file says and the caller hears why."""
        document = {"approved": [a.to_dict() for a in approvals.values()]}
        try:
            atomic_write(self.path, json.dumps(document, indent=2) + "\n", mode=0o600)
        except OSError as exc:
            raise FederationError(
                f"cannot save {self.path}: {describe_os_error(exc)}; "
                "the trusted peers are unchanged"
            ) from None
        self._approvals = approvals

    def trusts(self, peer_id: str, key: str | None) -> bool:
        """Whether we want this peer's traffic and let it take ours."""
        if self.mode == "open":
            return True
        return (
            peer_id in self._config_ids
            or peer_id in self._approvals
            or (key is not None and key in self._config_keys)
        )

    def source(self, peer_id: str, key: str | None) -> str | None:
        """Why a peer is trusted: config, approved, open — or None."""
        if peer_id in self._config_ids or (key is not None and key in self._config_keys):
            return "config"
        if peer_id in self._approvals:
            return "approved"
        return "open" if self.mode == "open" else None

    def approve(self, peer_id: str, key: str | None, name: str) -> Approval:
        """Trust a peer from now on (and after restarts)."""
        if not is_node_id(peer_id):
            raise FederationError(f"{peer_id!r} is not a peer id (32 hex digits)")
        if key is not None and node_id(key) != peer_id:
            raise FederationError(f"the key given for peer {peer_id} does not match its id")
        approval = Approval(peer_id, key, name, time.time())
        self._save({**self._approvals, peer_id: approval})
        return approval

    def forget(self, peer_id: str) -> bool:
        """Withdraw a runtime approval. True if there was one."""
        if peer_id in self._config_ids:
            raise FederationError(
                f"peer {peer_id} is trusted by the configuration "
                "(discovery.federation.trusted_peers); remove it there"
            )
        if peer_id not in self._approvals:
            return False
        self._save({k: v for k, v in self._approvals.items() if k != peer_id})
        return True

    def approvals(self) -> list[Approval]:
        return list(self._approvals.values())

    def policy(self, advertised: Mapping[str, str]) -> KeyPolicy:
        """The ZAP policy, given the keys peers advertise right now (id → key)."""
        if self.mode == "open":
            return KeyPolicy(keys=frozenset(advertised.values()) | self._config_keys)
        keys = set(self._config_keys)
        keys.update(a.key for a in self._approvals.values() if a.key is not None)
        return KeyPolicy(keys=frozenset(keys), ids=self._config_ids | frozenset(self._approvals))
