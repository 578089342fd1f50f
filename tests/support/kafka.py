"""Kafka for tests: librdkafka's mock cluster, in a process of its own.

No Kafka broker can be installed here, so the tests use the one stand-in the project allows: the
mock cluster built into librdkafka, switched on by the ``test.mock.num.brokers`` setting of a
confluent-kafka Producer. The cluster speaks the Kafka protocol over TCP on loopback (topics
created on first use, consumer groups, committed offsets, idempotent producers), and the
appliance connects to it like to any broker. The process prints the brokers' addresses, taken
from the producer's metadata (``list_topics().brokers``), and lives until it is stopped, killed,
or its parent goes away (its standard input closes).

librdkafka picks the brokers' ports itself, so a cluster started again listens elsewhere. Where
a test restarts the cluster, the process also accepts connections on a fixed bootstrap port and
relays them to its first broker, as a DNS name or a load balancer stands in front of a real
cluster: a client that bootstraps again finds the new brokers there.

Limits seen with aiokafka 0.14 against this mock (librdkafka 2.x): everything the appliance uses
works (API version negotiation, idempotent produce with acks=all, auto-created topics, consumer
groups with pattern subscriptions, commit and committed offsets); the mock does no SASL and no
TLS (the tests check those settings in the client's configuration instead), keeps everything in
memory (a killed cluster comes back empty), and stamps records with its own timestamps.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.brokers import end_process, free_port, wait_for_port

STARTUP_TIMEOUT = 20.0


@dataclass
class MockKafka:
    """One mock cluster process; ``bootstrap`` is what a client is configured with."""

    brokers: int = 1
    bootstrap_port: int | None = None  # a fixed relay port, for tests that restart the cluster
    process: subprocess.Popen[str] | None = None
    broker_addresses: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        if self.bootstrap_port is not None:
            return f"127.0.0.1:{self.bootstrap_port}"
        return ",".join(self.broker_addresses)

    def start(self) -> MockKafka:
        arguments = [sys.executable, "-m", "tests.support.kafka", str(self.brokers)]
        if self.bootstrap_port is not None:
            arguments.append(str(self.bootstrap_port))
        self.process = subprocess.Popen(
            arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = _read_line(self.process, STARTUP_TIMEOUT)
        self.broker_addresses = line.split(",")
        if self.bootstrap_port is not None:
            wait_for_port(self.bootstrap_port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        end_process(self.process, sig)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Any]:
    """Up to ``count`` records of ``topic`` from its start, read by a plain aiokafka consumer
    (no group), within ``timeout`` seconds."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += batch
    finally:
        await consumer.stop()
    return records


def restartable() -> MockKafka:
    """A cluster behind a fixed bootstrap port, so that it can be killed and started again."""
    return MockKafka(bootstrap_port=free_port())


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    if not result or not result[0].strip():
        process.kill()
        raise RuntimeError("the mock Kafka cluster did not start (no broker address)")
    return result[0].strip()


# --- the cluster process --------------------------------------------------------------------


def _relay(listen_port: int, target: tuple[str, int]) -> None:
    """Accept on ``listen_port`` and pipe each connection to ``target`` (a bootstrap address)."""
    server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target)
        except OSError:
            client.close()
            continue
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _serve(brokers: int, relay_port: int | None) -> None:
    from confluent_kafka import Producer

    producer = Producer({"test.mock.num.brokers": brokers, "log_level": 3})
    metadata = producer.list_topics(timeout=STARTUP_TIMEOUT)
    addresses = [f"{b.host}:{b.port}" for _, b in sorted(metadata.brokers.items())]
    if relay_port is not None:
        host, port = addresses[0].rsplit(":", 1)
        threading.Thread(target=_relay, args=(relay_port, (host, int(port))), daemon=True).start()
    print(",".join(addresses), flush=True)
    sys.stdin.read()  # until the parent closes it (or goes away)
    producer.flush(1)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
