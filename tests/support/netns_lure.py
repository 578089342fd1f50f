"""A hostile neighbour for the federation netns tests: advertises the records it is given and
reports every TCP connection made to the ports it listens on.

    python -m tests.support.netns_lure --interface ADDRESS --records JSON [--listen HOST:PORT ...]
                               [--hold HOST:PORT ...]

JSON is a list of {"name": instance name, "txt": {...}, "addresses": [...]}: any TXT, any
addresses, under its own host names (lure-N.local.). Prints {"ready": true} once the records are
announced and the listeners are open, then {"connection": "HOST:PORT"} per accepted connection.
``--listen`` ports close each connection at once; ``--hold`` ports keep it open and say nothing
(a peer that accepts but never completes a handshake).
End of input withdraws the records (goodbye) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from argentic_edge.discovery.mdns import SERVICE_TYPE


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
        infos = [ServiceInfo(SERVICE_TYPE, f"{record['name']}.{SERVICE_TYPE}",
                             port=int(record["txt"].get("pub", 5555)), properties=record["txt"],
                             server=f"lure-{index}.local.",
                             addresses=[socket.inet_aton(a) for a in record["addresses"]],
                             host_ttl=60, other_ttl=60)
                 for index, record in enumerate(records)]
        await asyncio.gather(*[await azc.async_register_service(info) for info in infos])
    report({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if azc is not None:
        await azc.async_close()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
