"""Bus load for bench.federation, run inside a namespace as its own process.

    python -m bench.fedload sub ENDPOINT --count N   prints {"ready"}, {"warm"}, then the result
    python -m bench.fedload pub ENDPOINT --count N   sends warm-up messages until a line "go",
                                                     then N messages of --size bytes at full speed

For the raw-libzmq baseline the publisher binds (``--bind``) as a CURVE server
(``--curve-secret``) and the subscriber connects as a CURVE client (``--curve-server``).

The subscriber reports how many messages arrived and the rate between its first and last one,
so Python start-up and warm-up never count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import zmq

PREFIX = b"bench/data "


def subscribe(endpoint: str, count: int, quiet: float, curve_server: str | None) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"bench/")
    if curve_server:
        sock.curve_serverkey = curve_server.encode()
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.connect(endpoint)
    print(json.dumps({"ready": True}), flush=True)
    while not sock.recv().startswith(b"bench/warm"):
        pass
    print(json.dumps({"warm": True}), flush=True)
    received, first, last = 0, 0.0, 0.0
    while received < count:
        try:
            message = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            if not sock.poll(int(quiet * 1000)):
                break
            continue
        if message.startswith(b"bench/data"):
            last = time.perf_counter()
            if received == 0:
                first = last
            received += 1
    elapsed = last - first
    print(
        json.dumps(
            {
                "received": received,
                "seconds": elapsed,
                "rate": (received - 1) / elapsed if elapsed > 0 else 0.0,
            }
        ),
        flush=True,
    )
    sock.close()
    context.term()


def publish(endpoint: str, count: int, size: int, bind: bool, curve_secret: str | None) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    if curve_secret:
        sock.curve_server = True
        sock.curve_secretkey = curve_secret.encode()
    if bind:
        sock.bind(endpoint)
    else:
        sock.connect(endpoint)
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        sock.send(b"bench/warm {}")
        time.sleep(0.02)  # a warm-up beat, not synchronisation: the controller says "go"
        try:
            if os.read(sys.stdin.fileno(), 16):
                break
        except BlockingIOError:
            pass
    message = PREFIX + b"x" * max(0, size - len(PREFIX))
    for _ in range(count):
        sock.send(message)
    sock.close(linger=-1)
    context.term()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["pub", "sub"])
    parser.add_argument("endpoint")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--quiet", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=64, help="message bytes, topic included")
    parser.add_argument("--bind", action="store_true")
    parser.add_argument("--curve-secret", help="publisher: be a CURVE server with this key")
    parser.add_argument("--curve-server", help="subscriber: the CURVE server's public key")
    args = parser.parse_args()
    if args.role == "sub":
        subscribe(args.endpoint, args.count, args.quiet, args.curve_server)
    else:
        publish(args.endpoint, args.count, args.size, args.bind, args.curve_secret)


if __name__ == "__main__":
    main()
