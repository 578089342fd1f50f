"""What a process listens on, read from /proc the way ``ss -ltnup`` does.

A socket belongs to the process when one of its file descriptors points at the socket's inode;
the tables in /proc/<pid>/net are those of the process's network namespace, so this works for
a process inside a namespace too.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # bound, and receiving from anyone


def _inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return str(ip), int(port, 16)


def listening(pid: int) -> set[tuple[str, str, int]]:
    """``(protocol, address, port)`` for every TCP socket of ``pid`` in LISTEN and every UDP
    socket that receives from anyone."""
    mine = _inodes(pid)
    found = set()
    for table, wanted in (
        ("tcp", TCP_LISTEN),
        ("tcp6", TCP_LISTEN),
        ("udp", UDP_UNCONNECTED),
        ("udp6", UDP_UNCONNECTED),
    ):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == wanted and inode in mine:
                found.add((table.rstrip("6"), *_address(local)))
    return found
