"""A hostile mDNS neighbour for netns tests: a raw zeroconf that advertises junk.

    python -m tests.support.netns_flood ADDRESS --valid K

Registers, as ``_argentic._tcp`` services on ADDRESS: records with malformed TXT, records with
absurd ports, and K well-formed fake appliances (each with its own key pair, so each is a
distinct peer). Prints {"ready": true, ...counts} when all are announced and withdraws them
(goodbye) at end of input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

import zmq
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from argentic_edge.discovery.record import SERVICE_TYPE, node_id


def good_txt() -> dict[str, str | bytes]:
    public = zmq.curve_keypair()[0].decode()
    return {
        "v": "1",
        "id": node_id(public),
        "curve": public,
        "ver": "0.0-fake",
        "pub": "5555",
        "sub": "5556",
        "fed": "5557",
        "web": "0",
        "tls": "",
    }


def junk() -> dict[str, list[dict[str, str | bytes]]]:
    """Records that must be ignored, by the counter they must land in."""
    other = good_txt()
    return {
        "malformed": [
            {k: v for k, v in good_txt().items() if k != "v"},  # no format version
            good_txt() | {"id": "not-an-id"},  # bad id
            good_txt() | {"id": str(other["id"])},  # id of another key
            good_txt() | {"curve": "short"},  # bad key
            good_txt() | {"ver": b"\xff\xfe"},  # not UTF-8
            good_txt() | {"tls": "xyz"},  # bad fingerprint
            good_txt() | {"pub": "http"},  # not a number
        ],
        "bad_port": [
            good_txt() | {"pub": "0"},
            good_txt() | {"sub": "70000"},
            good_txt() | {"fed": "22"},  # privileged
            good_txt() | {"sub": "5555"},  # same as pub
        ],
        "unsupported_version": [good_txt() | {"v": "99"}],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("--valid", type=int, default=20)
    args = parser.parse_args()
    azc = AsyncZeroconf(interfaces=[args.address], ip_version=IPVersion.V4Only)
    records = junk()
    records["valid"] = [good_txt() for _ in range(args.valid)]
    infos = []
    for kind, txts in records.items():
        for i, txt in enumerate(txts):
            infos.append(
                ServiceInfo(
                    SERVICE_TYPE,
                    f"{kind}-{i}.{SERVICE_TYPE}",
                    port=5555,
                    properties=txt,
                    server=f"flood-{kind}-{i}.local.",
                    addresses=[socket.inet_aton(args.address)],
                    host_ttl=60,
                    other_ttl=60,
                )
            )
    tasks = [await azc.async_register_service(info, cooperating_responders=True) for info in infos]
    await asyncio.gather(*tasks)
    print(json.dumps({"ready": True} | {k: len(v) for k, v in records.items()}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await azc.async_close()


if __name__ == "__main__":
    asyncio.run(main())
