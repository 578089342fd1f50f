"""``argentic-edge peers``: list the appliances that answer on the LAN.

It browses for ``--timeout`` seconds with the same parser and checks the appliance uses, so what
it prints (and the records it counts as ignored) is what an appliance would see from here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from argentic_edge.config import ConfigError, load_config


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


def _table(result: dict[str, Any], timeout: float) -> str:
    peers = result["peers"]
    if not peers:
        return f"no argentic-edge appliance answered within {timeout:g}s\n"
    rows = [("NAME", "ID", "ADDRESSES", "PUB", "SUB", "FED", "WEB", "VERSION", "SEEN")]
    for peer in peers:
        rows.append(
            (
                peer["name"],
                peer["id"][:12],
                ",".join(peer["addresses"]),
                str(peer["pub"]),
                str(peer["sub"]),
                str(peer["fed"] or "-"),
                str(peer["web"] or "-"),
                peer["version"],
                time.strftime("%H:%M:%S", time.localtime(peer["last_seen"])),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    ignored = {k: v for k, v in result["counters"].items() if v}
    if ignored:
        lines.append("ignored records: " + ", ".join(f"{k} {v}" for k, v in ignored.items()))
    return "\n".join(lines) + "\n"


def cmd_peers(args: argparse.Namespace) -> int:
    try:
        interfaces = load_config(args.config).discovery.interfaces if args.config else ()
        result = asyncio.run(browse(args.timeout, interfaces))
    except (ConfigError, OSError) as exc:
        sys.stderr.write(f"argentic-edge: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(_table(result, args.timeout))
    return 0


def add_parser(subparsers: Any) -> None:
    peers = subparsers.add_parser("peers", help="list argentic-edge appliances on the LAN (mDNS)")
    peers.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to listen for answers (default 3)"
    )
    peers.add_argument(
        "--json", action="store_true", help="print JSON: {peers: [...], counters: {...}}"
    )
    peers.add_argument(
        "--config", "-c", help="take discovery.interfaces from this configuration file"
    )
    peers.set_defaults(func=cmd_peers)
