"""The appliance is killed (SIGKILL, as good as a power cut) while it writes, and started again.

While agents publish on the bus, the web API saves configurations and approves peers, and
``argentic-edge certs renew --force`` reissues the server certificate, the appliance (and the
renewing CLI) are killed at seeded random moments. After each kill: every file in the data
directory parses (YAML, JSON, PEM certificates and keys, the chain verifies), the node's
federation key and the CA never change, every approval the API acknowledged is still there, and
the appliance comes back healthy on the same files.
"""

from __future__ import annotations

import ast
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import yaml
import zmq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from argentic_edge.config import load_config
from argentic_edge.federation.trust import TRUST_FILE
from argentic_edge.storage import sweep_stale_temp_files
from tests.support.appliance import Appliance, appliance_document, environment
from tests.support.brokers import free_port
from tests.support.config import REPO_ROOT as ROOT

KILLS = 4
TEMP_SUFFIX = ".tmp"  # storage.atomic_write's temporary files: .<name>.<random>.tmp


class Churn:
    """Writers and traffic in threads until stopped; what the API acknowledged is recorded."""

    def __init__(self, appliance: Appliance, data: Path, rng: random.Random) -> None:
        self.appliance = appliance
        self.data = data
        self.rng = rng
        self.stop = threading.Event()
        self.approved: list[str] = []  # acknowledged with 200
        self.saves = 0
        self.renewals = 0
        self.sent = 0
        self.renewer: subprocess.Popen[bytes] | None = None
        self.threads = [
            threading.Thread(target=target, daemon=True)
            for target in (self._bus, self._api, self._renew)
        ]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def kill_renewer(self) -> None:
        renewer = self.renewer
        if renewer is not None and renewer.poll() is None:
            renewer.kill()

    def _bus(self) -> None:
        context = zmq.Context()
        pub = context.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 1000)
        pub.connect(self.appliance.bus_publish)
        try:
            while not self.stop.is_set():
                try:
                    pub.send(
                        b'agent/load {"type":"load","data":"' + b"x" * 200 + b'"}', zmq.NOBLOCK
                    )
                    self.sent += 1
                except zmq.Again:
                    time.sleep(0.001)
                if self.sent % 100 == 0:
                    time.sleep(0.001)
        finally:
            pub.close()
            context.term()

    def _api(self) -> None:
        document = dict(self.appliance.document)
        while not self.stop.is_set():
            try:
                if self.rng.random() < 0.5:
                    peer_id = secrets.token_hex(16)
                    code, _ = self.appliance.request(
                        "POST", f"/api/peers/{peer_id}/approve", timeout=5
                    )
                    if code == 200:
                        self.approved.append(peer_id)
                else:
                    discovery = dict(document["discovery"])
                    discovery["liveness_interval"] = self.rng.choice([1.0, 2.0, 3.0])
                    document["discovery"] = discovery
                    code, _ = self.appliance.request(
                        "PUT",
                        "/api/config",
                        yaml.safe_dump(document).encode(),
                        content_type="application/yaml",
                        timeout=5,
                    )
                    self.saves += code == 200
            except OSError:
                self.stop.wait(0.02)  # killed under us, or restarting

    def _renew(self) -> None:
        env = environment()
        while not self.stop.is_set():
            self.renewer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "argentic_edge",
                    "certs",
                    "renew",
                    "--force",
                    "--data-dir",
                    str(self.data),
                    "--node-name",
                    self.appliance.document["node_name"],
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.renewals += self.renewer.wait(timeout=30) == 0


def check_files(data: Path) -> dict[str, Any]:
    """Every file the appliance owns parses; returns what was found (temp files apart)."""
    found: dict[str, Any] = {"files": 0, "temp_files": []}
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        if path.name == "appliance.log":
            continue
        if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX):
            found["temp_files"].append(str(path.relative_to(data)))
            continue
        found["files"] += 1
        raw = path.read_bytes()
        assert raw, f"{path} is empty"
        if path.suffix == ".json":
            found[path.name] = json.loads(raw)
        elif path.name.endswith((".yaml", ".yaml.bak")):
            assert isinstance(yaml.safe_load(raw), dict), path
            load_config(path)
        elif path.suffix == ".pem":
            found[path.name] = x509.load_pem_x509_certificate(raw)
        elif path.suffix == ".key":
            serialization.load_pem_private_key(raw, None)  # raises on a damaged key
        else:
            raise AssertionError(f"an unexpected file in the data directory: {path}")
        if path.suffix in (".key", ".json") or path.name.endswith((".yaml", ".bak")):
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    ca, server = found.get("ca.pem"), found.get("server.pem")
    if ca is not None and server is not None:
        server.verify_directly_issued_by(ca)
    return found


def test_sigkill_mid_write_leaves_every_file_whole_and_the_appliance_comes_back(
    tmp_path: Path,
) -> None:
    rng = random.Random(2026)
    data = tmp_path / "data"
    document = appliance_document(
        data,
        discovery={
            "interfaces": ["lo"],
            "liveness_interval": 1.0,
            "federation": {"export_port": free_port()},
        },
        certificates={"check_interval": 0.2},
    )
    appliance = Appliance(data, document)  # the config file lives in the data dir too
    appliance.start()
    appliance.wait_healthy()
    identity = appliance.status()["peers"]["node_id"]
    ca_fingerprint = check_files(data)["ca.pem"].fingerprint(hashes.SHA256())
    figures = {
        "kills": 0,
        "files_checked": 0,
        "temp_files_left": 0,
        "approved": 0,
        "config_saves": 0,
        "renewals": 0,
        "bus_messages": 0,
    }
    approved: list[str] = []
    try:
        for _ in range(KILLS):
            with Churn(appliance, data, rng) as churn:
                time.sleep(rng.uniform(0.5, 2.0))  # the moment of the power cut
                appliance.kill()
                churn.kill_renewer()
            approved += churn.approved
            figures["kills"] += 1
            for key, value in (
                ("approved", len(churn.approved)),
                ("config_saves", churn.saves),
                ("renewals", churn.renewals),
                ("bus_messages", churn.sent),
            ):
                figures[key] += value

            found = check_files(data)
            figures["files_checked"] += found["files"]
            figures["temp_files_left"] += len(found["temp_files"])
            assert found["curve.json"]["public"]
            assert found["ca.pem"].fingerprint(hashes.SHA256()) == ca_fingerprint
            saved = {entry["id"] for entry in found.get(TRUST_FILE, {"approved": []})["approved"]}
            assert set(approved) <= saved, "an acknowledged approval was lost"

            appliance.start(write_config=False)  # from the file the API saved last
            appliance.wait_healthy()
            status = appliance.status()
            assert status["peers"]["node_id"] == identity
            assert status["certificates"]["error"] is None
            assert set(approved) <= {entry["id"] for entry in status["peers"]["approved"]}
        # The orphans of interrupted writes (if a kill hit one) go at the next start once
        # they are older than a write can take; the power was off a while, say a minute.
        appliance.stop()
        orphans = check_files(data)["temp_files"]
        for name in orphans:
            os.utime(data / name, (time.time() - 60, time.time() - 60))
        appliance.start(write_config=False)
        assert check_files(data)["temp_files"] == []
    finally:
        appliance.stop()
    print(f"\npower loss figures: {json.dumps(figures)}")
    assert figures["approved"] and figures["config_saves"] and figures["renewals"]


def test_only_stale_temporary_files_are_swept(tmp_path: Path) -> None:
    keys = tmp_path / "certs"
    keys.mkdir()
    old, fresh = keys / ".server.key.ab_12XyZ.tmp", keys / ".ca.pem.k3j4h5g6.tmp"
    unrelated = keys / ".notes.tmp"  # not a name atomic_write makes
    for path in (old, fresh, unrelated):
        path.write_text("partial")
    os.utime(old, (time.time() - 60, time.time() - 60))
    os.utime(unrelated, (time.time() - 60, time.time() - 60))
    assert sweep_stale_temp_files(tmp_path) == [old]
    assert not old.exists() and fresh.exists() and unrelated.exists()
    assert sweep_stale_temp_files(tmp_path / "missing") == []


def test_the_package_writes_files_only_through_atomic_write() -> None:
    """A power cut must never find a half-written file: no module writes any other way."""
    offenders = []
    for path in sorted((ROOT / "argentic_edge").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "argentic_edge/storage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            writes = name in ("write_text", "write_bytes", "mkstemp", "NamedTemporaryFile")
            if name == "open" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                writes = any(flag in str(node.args[1].value) for flag in "wax+")
            if name == "open" and any(k.arg == "mode" for k in node.keywords):
                writes = True
            if writes:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []
