"""A hostile neighbour for the federation netns tests: advertises the records it is given and
reports every TCP connection made to the ports it listens on.

    python -m tests.support.netns_lure --interface ADDRESS --records JSON [--listen HOST:PORT ...]
                               [--hold HOST:PORT ...]

JSON is a list of {"name": instance name, "txt": {...}, "addresses": [...]}: any TXT, any
addresses, under its own host names (lure-N.local.). Prints {"ready": true} once the records are
announced and the listeners are open, then {"connection": "HOST:PORT"} per accepted connection.
``--listen`` ports close each connection at once; ``--hold`` ports keep it open and say nothing
(a peer that accepts but never completes a handshake).

Each input line {"forge": [RECORD, ...]} sends one forged mDNS answer, from a raw UDP socket on
port 5353 of ``--interface`` to 224.0.0.251:5353 (inside the namespace), and prints
{"forged": BYTES}. A RECORD is {"type": "ptr"|"srv"|"txt"|"a", "name": ..., "ttl": SECONDS}
plus "alias" (ptr), "server" and "port" (srv), "txt" (txt) or "address" (a); TTL 0 is a goodbye.
End of input withdraws the records (goodbye) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

from zeroconf import (
    DNSAddress,
    DNSOutgoing,
    DNSPointer,
    DNSRecord,
    DNSService,
    DNSText,
    IPVersion,
    ServiceInfo,
)
from zeroconf.asyncio import AsyncZeroconf

from argentic_edge.discovery.record import SERVICE_TYPE


def report(document: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def listen(where: str, hold: bool = False) -> asyncio.Server:
    host, port = where.rsplit(":", 1)
    held: list[asyncio.StreamWriter] = []

    def connected(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        report({"connection": where})
        if hold:
            held.append(writer)
        else:
            writer.close()

    return await asyncio.start_server(connected, host, int(port))


MDNS_GROUP = ("224.0.0.251", 5353)
_IN, _UNIQUE = 1, 0x8000  # class IN, and the cache-flush bit of a unique record
_TYPES = {"ptr": 12, "a": 1, "srv": 33, "txt": 16}
_RESPONSE = 0x8400  # QR (a response) and AA (authoritative), as a real responder sends


def forged_record(spec: dict[str, Any]) -> DNSRecord:
    kind, name, ttl = spec["type"], spec["name"], int(spec["ttl"])
    if kind == "ptr":  # shared, not unique: no cache-flush bit
        return DNSPointer(name, _TYPES[kind], _IN, ttl, spec["alias"])
    klass = _IN | _UNIQUE
    if kind == "srv":
        return DNSService(name, _TYPES[kind], klass, ttl, 0, 0, int(spec["port"]), spec["server"])
    if kind == "txt":
        packed = b"".join(
            bytes([len(item)]) + item
            for item in (f"{k}={v}".encode() for k, v in spec["txt"].items())
        )
        return DNSText(name, _TYPES[kind], klass, ttl, packed)
    return DNSAddress(name, _TYPES[kind], klass, ttl, socket.inet_aton(spec["address"]))


def forge(interface: str, specs: list[dict[str, Any]]) -> int:
    """Send one mDNS answer holding these records; the number of bytes sent."""
    out = DNSOutgoing(_RESPONSE)
    for spec in specs:
        out.add_answer_at_time(forged_record(spec), 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, MDNS_GROUP[1]))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        return sum(sock.sendto(packet, MDNS_GROUP) for packet in out.packets())
    finally:
        sock.close()


def serve_commands(interface: str) -> None:
    """Forge what each input line asks for, until end of input."""
    for line in sys.stdin:
        report({"forged": forge(interface, json.loads(line)["forge"])})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", help="advertise on this address (none: no records)")
    parser.add_argument("--records", default="[]")
    parser.add_argument("--listen", action="append", default=[])
    parser.add_argument("--hold", action="append", default=[])
    args = parser.parse_args()
    servers = [await listen(where) for where in args.listen]
    servers += [await listen(where, hold=True) for where in args.hold]
    azc = None
    records = json.loads(args.records)
    if records:
        azc = AsyncZeroconf(interfaces=[args.interface], ip_version=IPVersion.V4Only)
        infos = [
            ServiceInfo(
                SERVICE_TYPE,
                f"{record['name']}.{SERVICE_TYPE}",
                port=int(record["txt"].get("pub", 5555)),
                properties=record["txt"],
                server=f"lure-{index}.local.",
                addresses=[socket.inet_aton(a) for a in record["addresses"]],
                host_ttl=60,
                other_ttl=60,
            )
            for index, record in enumerate(records)
        ]
        await asyncio.gather(*[await azc.async_register_service(info) for info in infos])
    report({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, serve_commands, args.interface)
    if azc is not None:
        await azc.async_close()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
