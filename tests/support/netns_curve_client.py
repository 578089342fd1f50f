"""A stranger on the LAN: connects to an export port with a fresh CURVE key pair.

    python -m tests.support.netns_curve_client ENDPOINT SERVER_KEY

Prints {"handshake": "succeeded" | "refused" | "timeout", "received": N}: the handshake
outcome libzmq's monitor reports, and how many messages arrived in the second after it.
"""

from __future__ import annotations

import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message


def main() -> None:
    endpoint, server_key = sys.argv[1], sys.argv[2]
    context = zmq.Context()
    public, secret = zmq.curve_keypair()
    client = context.socket(zmq.SUB)
    client.setsockopt(zmq.LINGER, 0)
    client.curve_serverkey = server_key.encode()
    client.curve_publickey, client.curve_secretkey = public, secret
    client.setsockopt(zmq.SUBSCRIBE, b"")
    monitor = client.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )
    client.connect(endpoint)
    outcome = "timeout"
    if monitor.poll(5000):
        event = recv_monitor_message(monitor)["event"]
        outcome = "succeeded" if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else "refused"
    received = 0
    deadline = time.monotonic() + 1.0
    while (remaining := deadline - time.monotonic()) > 0:
        if client.poll(int(remaining * 1000) + 1):
            client.recv()
            received += 1
    print(json.dumps({"handshake": outcome, "received": received}), flush=True)
    monitor.close()
    client.close()
    context.term()


if __name__ == "__main__":
    main()
