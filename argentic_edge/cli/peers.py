"""``argentic-edge peers``: the appliances that answer on the LAN, and ``peers approve|forget
NAME``.

The list browses for ``--timeout`` seconds with the same parser and checks the appliance uses,
so what it prints (and the records it counts as ignored) is what an appliance would see from
here. It marks this node (by the node id in the data directory) and shows what each peer is to
it: the trust, from the running appliance's API when the configuration gives ``web.api_token``,
else from the trust store on disk, and the link state (only the running appliance knows that).

``approve`` and ``forget`` go through the running appliance's API (``web.api_token``), which
links at once; with no appliance running they change the trust store in the data directory,
read at the next start. A running appliance without a token is never written behind its back:
it keeps its approvals in memory and would overwrite the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from argentic_edge.config import EdgeConfig, find_config_file, load_config
from argentic_edge.discovery.record import is_node_id
from argentic_edge.errors import EdgeError
from argentic_edge.storage import certs_dir, federation_dir

if TYPE_CHECKING:  # the federation modules load when a command needs them
    from argentic_edge.federation.trust import TrustStore

API_TIMEOUT = 10.0


class PeersError(EdgeError):
    """A peers command cannot do what was asked; the message says why and what to do."""


async def browse(timeout: float, interfaces: tuple[str, ...]) -> dict[str, Any]:
    """Everything that answered within ``timeout`` seconds, with the ignored-record counters."""
    from argentic_edge.discovery.browser import Browser
    from argentic_edge.discovery.network import zeroconf_for
    from argentic_edge.discovery.table import PeerTable

    azc = zeroconf_for(interfaces)
    table = PeerTable(max_peers=1024)
    browser = Browser(azc.zeroconf, table)
    try:
        await browser.start()
        await asyncio.sleep(timeout)  # browsing is collecting for a while, by definition
    finally:
        await browser.stop()
        await azc.async_close()
    counters = dict(browser.counters)
    counters["table_full"] = table.refused
    return {"peers": [peer.to_dict() for peer in table.peers()], "counters": counters}


# --- the running appliance ------------------------------------------------------------------


@dataclass(frozen=True)
class ApplianceApi:
    """The web API of the appliance this configuration describes, on this machine."""

    url: str
    token: str | None
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, config: EdgeConfig) -> ApplianceApi | None:
        web = config.web
        if not web.enabled:
            return None
        host = "127.0.0.1" if web.host in ("0.0.0.0", "::", "*") else web.host
        host = f"[{host}]" if ":" in host else host
        tls = None
        if config.certificates.enabled:
            ca = certs_dir(config.data_path) / "ca.pem"  # the local CA signed the page's cert
            tls = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
        scheme = "https" if tls else "http"
        token = web.api_token.reveal() if web.api_token is not None else None
        return cls(f"{scheme}://{host}:{web.port}", token, tls)

    def running(self) -> bool:
        """Whether the appliance answers at all (/healthz needs no token)."""
        try:
            self._request("GET", "/healthz", authorized=False)
        except urllib.error.HTTPError:
            return True  # 503: up, not healthy
        except (OSError, ssl.SSLError):
            return False
        return True

    def peers(self) -> dict[str, Any]:
        document = self._request("GET", "/api/status")
        return document.get("peers") or {}

    def act(self, peer_id: str, action: str) -> dict[str, Any]:
        return self._request("POST", f"/api/peers/{peer_id}/{action}")

    def _request(self, method: str, path: str, authorized: bool = True) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if authorized and self.token else {}
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers=headers,
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=API_TIMEOUT, context=self.tls) as answer:
            body = answer.read()
        return json.loads(body) if body else {}


def _api_call(api: ApplianceApi, call: Any, *args: str) -> Any:
    """An API call whose refusal becomes one clear line (the API answers in plain text)."""
    try:
        return call(*args)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        raise PeersError(f"the appliance at {api.url} refused: {detail or exc.reason}") from None
    except (OSError, ssl.SSLError) as exc:
        raise PeersError(f"the appliance at {api.url} did not answer: {exc}") from None


def _running_api(config: EdgeConfig, config_file: str | None) -> ApplianceApi | None:
    """The API of the appliance running with this configuration, or None when none runs.
    Raises when one runs and the configuration gives no token to use its API with."""
    api = ApplianceApi.of(config)
    if api is None or not api.running():
        return None
    if api.token is None:
        where = config_file or "the configuration"
        raise PeersError(
            f"the appliance is running ({api.url}) and its trust is its own while it runs: "
            f"approve on its page, or set web.api_token in {where} so that this command "
            "can use its API"
        )
    return api


# --- this node, and the trust store on disk -------------------------------------------------


def own_node_id(config: EdgeConfig) -> str | None:
    """This node's id, if it has one yet (never made here: that is the appliance's first run)."""
    from argentic_edge.federation.identity import KEY_FILE, load_or_create_keys

    directory = federation_dir(config.data_path)
    return load_or_create_keys(directory).node_id if (directory / KEY_FILE).exists() else None


def _trust_store(config: EdgeConfig) -> TrustStore:
    from argentic_edge.federation.trust import TrustStore

    store = TrustStore(config.discovery.federation, federation_dir(config.data_path))
    store.load()
    return store


def resolve(reference: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The one peer a NAME (or id, or an id's first digits) means among ``candidates``
    (dicts with ``id`` and ``name``)."""
    matches = [c for c in candidates if c.get("name") == reference or c["id"] == reference]
    if not matches and len(reference) >= 4:
        matches = [c for c in candidates if c["id"].startswith(reference.lower())]
    unique = list({c["id"]: c for c in matches}.values())
    if len(unique) == 1:
        return unique[0]
    if unique:
        ids = ", ".join(f"{c['id']} ({c.get('name') or '?'})" for c in unique)
        raise PeersError(f"{reference!r} names more than one peer: {ids}; give the id")
    known = ", ".join(sorted({c.get("name") or c["id"] for c in candidates})) or "none"
    raise PeersError(f"no peer named {reference!r} (known: {known})")


# --- the commands ---------------------------------------------------------------------------


def cmd_peers(args: argparse.Namespace) -> int:
    config_file = find_config_file(args.config)
    config = load_config(config_file)
    own = own_node_id(config)
    api = _running_api_quietly(config)
    try:
        result = asyncio.run(browse(args.timeout, config.discovery.interfaces))
    except OSError as exc:
        raise PeersError(f"cannot browse the LAN: {exc}") from None
    known: dict[str, dict[str, Any]] = {}
    if api is not None:
        known = {p["id"]: p for p in _api_call(api, api.peers).get("peers", [])}
    store = _trust_store(config) if api is None else None
    for peer in result["peers"]:
        peer["this_node"] = peer["id"] == own
        if peer["this_node"]:
            peer["trust"] = peer["link"] = None
        elif api is not None:
            running = known.get(peer["id"], {})
            peer["trust"], peer["link"] = running.get("trust"), running.get("link")
            peer["state"] = running.get("state", peer["state"])
        elif store is not None:
            peer["trust"], peer["link"] = store.source(peer["id"], peer.get("curve")), None
    result["node_id"] = own
    result["live"] = api is not None  # link states are known only then
    result["source"] = api.url if api is not None else f"the trust store ({_why_not_live(config)})"
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(_table(result, args.timeout))
    return 0


def _running_api_quietly(config: EdgeConfig) -> ApplianceApi | None:
    """For the list: a running appliance without a token leaves trust to the file, and the
    link states unknown (never an error: listing changes nothing)."""
    api = ApplianceApi.of(config)
    if api is None or api.token is None or not api.running():
        return None
    return api


def _why_not_live(config: EdgeConfig) -> str:
    api = ApplianceApi.of(config)
    if api is None:
        return "the web is off"
    if api.token is None:
        return "set web.api_token to see the running appliance's links"
    return "no appliance answered"


def cmd_trust(args: argparse.Namespace) -> int:
    """``peers approve NAME`` and ``peers forget NAME``."""
    config_file = find_config_file(args.config)
    config = load_config(config_file)
    api = _running_api(config, config_file)
    action = args.peers_command
    if api is not None:
        status = _api_call(api, api.peers)
        candidates = [*status.get("peers", []), *status.get("approved", [])]
        if action == "approve" and is_node_id(args.name):
            candidates.append({"id": args.name, "name": ""})
        peer = resolve(args.name, [c for c in candidates if c["id"] != status.get("node_id")])
        answer = _api_call(api, api.act, peer["id"], action)
        state = (answer.get("result") or {}).get("state") or "not seen yet"
        sys.stdout.write(f"{_done(action)} {_label(peer)} on {api.url}; now {state}\n")
        return 0
    store = _trust_store(config)
    if action == "forget":
        approvals = [{"id": a.peer_id, "name": a.name} for a in store.approvals()]
        peer = resolve(args.name, approvals)
        store.forget(peer["id"])
    else:
        peer = _find_on_the_lan(args, config)
        store.approve(peer["id"], peer.get("curve"), peer.get("name", ""))
    sys.stdout.write(
        f"{_done(action)} {_label(peer)} in {store.path} (no appliance answered: it takes "
        "effect when the appliance starts)\n"
    )
    return 0


def _find_on_the_lan(args: argparse.Namespace, config: EdgeConfig) -> dict[str, Any]:
    """The peer to approve, by id, or by name from what answers on the LAN."""
    if is_node_id(args.name):
        return {"id": args.name, "name": ""}
    try:
        found = asyncio.run(browse(args.timeout, config.discovery.interfaces))["peers"]
    except OSError as exc:
        raise PeersError(f"cannot browse the LAN: {exc}") from None
    own = own_node_id(config)
    return resolve(args.name, [p for p in found if p["id"] != own])


def _done(action: str) -> str:
    return "approved" if action == "approve" else "no longer trusting"


def _label(peer: dict[str, Any]) -> str:
    return f"{peer['name']} ({peer['id']})" if peer.get("name") else peer["id"]


def _table(result: dict[str, Any], timeout: float) -> str:
    peers = result["peers"]
    if not peers:
        return f"no argentic-edge appliance answered within {timeout:g}s\n"
    rows = [
        ("NAME", "ID", "ADDRESSES", "PUB", "SUB", "FED", "WEB", "VERSION", "SEEN", "TRUST", "LINK")
    ]
    for peer in peers:
        this = peer["this_node"]
        rows.append(
            (
                f"{peer['name']} (this node)" if this else peer["name"],
                peer["id"][:12],
                ",".join(peer["addresses"]),
                str(peer["pub"]),
                str(peer["sub"]),
                str(peer["fed"] or "-"),
                str(peer["web"] or "-"),
                peer["version"],
                time.strftime("%H:%M:%S", time.localtime(peer["last_seen"])),
                "-" if this else (peer["trust"] or "not trusted"),
                "-" if this else (peer["link"] or ("none" if result["live"] else "?")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"trust and links from {result['source']}")
    ignored = {k: v for k, v in result["counters"].items() if v}
    if ignored:
        lines.append("ignored records: " + ", ".join(f"{k} {v}" for k, v in ignored.items()))
    return "\n".join(lines) + "\n"


def add_parser(subparsers: Any) -> None:
    peers = subparsers.add_parser(
        "peers", help="list argentic-edge appliances on the LAN (mDNS); approve or forget one"
    )
    _common(peers)
    peers.add_argument(
        "--json", action="store_true", help="print JSON: {peers: [...], counters: {...}, ...}"
    )
    peers.set_defaults(func=cmd_peers)
    commands = peers.add_subparsers(dest="peers_command", metavar="COMMAND")
    for action, text in (
        ("approve", "trust a peer: its bus and ours link (it must approve us too)"),
        ("forget", "withdraw an approval: the link goes"),
    ):
        command = commands.add_parser(action, help=text)
        command.add_argument("name", metavar="NAME", help="the peer's name, id or id prefix")
        _common(command, command=True)
        command.set_defaults(func=cmd_trust)


def _common(parser: argparse.ArgumentParser, command: bool = False) -> None:
    """--timeout and --config, before or after approve/forget: the commands' copies default
    to SUPPRESS, so that they never overwrite what was given before the command."""
    parser.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS if command else 3.0,
        help="seconds to listen for answers (default 3)",
    )
    parser.add_argument(
        "--config",
        "-c",
        default=argparse.SUPPRESS if command else None,
        help="the appliance's configuration (default: the file the web editor saved): its "
        "web API, data directory and discovery.interfaces",
    )
