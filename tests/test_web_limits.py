"""What one careless or hostile client can do to the web listener, and what it cannot: idle and
half-open connections are closed after a timeout, connections past the cap are closed at once and
counted, and the bus keeps its file descriptors whatever the web is sent."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import zmq

from tests.appliance_proc import Appliance, appliance_document

NOFILE = 256  # the process's descriptor limit for the whole test: a small device's setting
CLIENTS = 300


def _forwarded(pub: zmq.Socket[bytes], sub: zmq.Socket[bytes], mark: bytes,
               timeout: float = 10.0) -> bool:
    """Publish ``mark`` until the subscriber receives it: the bus forwards end to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send(b"limits/probe " + mark)
        if sub.poll(200) and sub.recv().endswith(mark):
            return True
    return False


def _healthz_answers(appliance: Appliance, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if appliance.health()[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def test_idle_and_half_open_connections_cannot_take_down_the_web_or_the_bus(
        tmp_path: Path) -> None:
    document = appliance_document(tmp_path / "data", certificates={"enabled": False})
    appliance = Appliance(tmp_path, document, prefix=["prlimit", f"--nofile={NOFILE}:{NOFILE}",
                                                      "--"])
    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    for sock in (pub, sub):
        sock.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"limits/")
    clients: list[socket.socket] = []
    try:
        appliance.start()
        appliance.wait_healthy()
        pub.connect(appliance.bus_publish)
        sub.connect(appliance.bus_subscribe)
        assert _forwarded(pub, sub, b"before")
        for index in range(CLIENTS):
            client = socket.create_connection(("127.0.0.1", appliance.web_port), timeout=5)
            if index % 2:
                client.send(b"GET /heal")  # half a request line, never finished (slow loris)
            clients.append(client)
        assert _forwarded(pub, sub, b"during"), appliance.log_tail()
        assert _healthz_answers(appliance, timeout=30.0), appliance.log_tail()
        assert _forwarded(pub, sub, b"after"), appliance.log_tail()
        web = appliance.status()["web"]["connections"]
        assert web["limit"] < NOFILE
        assert web["refused"] > 0
    finally:
        for client in clients:
            client.close()
        pub.close()
        sub.close()
        context.term()
        appliance.stop()
    log = appliance.log_path.read_text(errors="replace")
    assert log.count("web: connection limit") == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert appliance.log_path.stat().st_size < 64 * 1024
