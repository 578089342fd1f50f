"""A throwaway LAN of network namespaces, for real multicast between real processes.

A hub namespace holds a bridge; every node namespace gets a veth pair into it (``eth0``,
10.77.0.N/24, loopback up). Names carry a random suffix so parallel runs never collide, and
``close()`` kills what was started and deletes every namespace it made, failure or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.appliance import environment
from tests.support.config import config_document, write_yaml

SUBNET = "10.77.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"ae-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        return f"cannot create a network namespace: {stderr.decode().strip() or exc}"
    _ip("netns", "del", probe)
    return None


class Lines:
    """A child's output, line by line, read by a thread so waits can time out."""

    def __init__(self, stream: IO[bytes], copy: Path | None = None) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.copy = copy.open("ab") if copy is not None else None
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            if self.copy is not None:
                self.copy.write(raw)
                self.copy.flush()
            self.queue.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout:g}s") from None
        if line is None:
            raise EOFError("the process closed its output")
        return line


@dataclass
class Namespace:
    name: str
    address: str
    lan: Lan

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(
        self, argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        full_env = environment(**{"PYTHONUNBUFFERED": "1", **(env or {})})
        process = subprocess.Popen(self.command(argv), env=full_env, **kwargs)
        self.lan.processes.append(process)
        return process

    def run(
        self, argv: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv),
            env=environment(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]


@dataclass
class Lan:
    """The hub with its bridge, and the node namespaces attached to it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    nodes: int = 0

    @property
    def hub(self) -> str:
        return f"ae-{self.tag}-hub"

    def create(self) -> Lan:
        _ip("netns", "add", self.hub)
        self.namespaces.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        _ip("-n", self.hub, "link", "set", "lo", "up")
        return self

    def add(self) -> Namespace:
        """A new node namespace on the LAN."""
        self.nodes += 1
        index = self.nodes
        name = f"ae-{self.tag}-n{index}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        inside, outside = f"ae{self.tag}i{index}", f"ae{self.tag}o{index}"
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", name)
        _ip("link", "set", outside, "netns", self.hub)
        _ip("-n", name, "link", "set", inside, "name", "eth0")
        _ip("-n", self.hub, "link", "set", outside, "master", "br0", "up")
        address = f"{SUBNET}.{index}"
        _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "eth0")
        return Namespace(name, address, self)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        self.namespaces.clear()


def node_config(
    tmp: Path,
    key: str,
    node_name: str,
    pub: int,
    sub: int,
    discovery: dict[str, Any],
    **sections: Any,
) -> Path:
    """The config file ``tmp/<key>.yaml`` of an appliance alone in its namespace: data in
    ``tmp/<key>``, the bus on every interface of the namespace (each namespace uses the same
    ports), ``discovery`` as given, ``sections`` (such as ``web``) as given, the other
    optional services off."""
    return write_yaml(
        tmp / f"{key}.yaml",
        config_document(
            tmp / key,
            node_name=node_name,
            messaging={"port": pub, "backend_port": sub},
            discovery=discovery,
            **sections,
        ),
    )


class Node:
    """One appliance in a namespace, run by tests/support/netns_node.py: a real Edge, with a JSON-lines
    control channel on stdin/stdout (status, approve, forget, wait_peer)."""

    def __init__(self, ns: Namespace, config: Path, data_dir: Path, log: Path) -> None:
        self.ns = ns
        self.config = config
        self.data_dir = data_dir
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.lines: Lines | None = None
        self.started_at = 0.0
        self.ready: dict[str, Any] = {}

    def start(self, timeout: float = 20.0) -> Node:
        self.started_at = time.monotonic()
        self.process = self.ns.popen(
            self.ns.python("-m", "tests.support.netns_node", str(self.config)),
            env={"ARGENTIC_EDGE_DATA_DIR": str(self.data_dir)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
        )
        assert self.process.stdout is not None
        self.lines = Lines(self.process.stdout)
        self.ready = self._reply(timeout)
        return self

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.lines is not None
        try:
            return json.loads(self.lines.next(timeout))
        except (TimeoutError, EOFError) as exc:
            raise AssertionError(
                f"node {self.ns.name}: {exc}; its log:\n{self.log.read_text()[-4000:]}"
            ) from None

    def send(self, command: dict[str, Any]) -> None:
        """Write a command without waiting for its reply (``_reply`` reads it): the node can
        start waiting for something before the test makes it happen."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()

    def request(self, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        self.send(command)
        return self._reply(timeout + 5)

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})

    def wait_peer(self, peer: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        """Block until the peer (name or id) reaches ``state``; the peer dict, with 'elapsed'."""
        reply = self.request(
            {"op": "wait_peer", "peer": peer, "state": state, "timeout": timeout}, timeout
        )
        if not reply.get("ok"):
            raise AssertionError(
                f"{self.ns.name}: peer {peer} did not become {state} within "
                f"{timeout}s; peers: {json.dumps(reply.get('peers'))}"
            )
        return reply

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
