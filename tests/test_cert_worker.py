"""The certificate work runs in a child process: the appliance itself never loads cryptography,
and every way the child can fail is a certificate error the service reports and survives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path

import pytest

import argentic_edge.certs.worker as cert_worker
from argentic_edge.certs.files import CertError, CertFiles
from argentic_edge.certs.issuing import CertStore
from argentic_edge.certs.service import CertManager
from tests.support.appliance import Appliance, appliance_document
from tests.support.bridge import wait_until

NODE = "workernode"


def files(tmp_path: Path, **options: object) -> CertFiles:
    return CertFiles(tmp_path / "certs", NODE, **options)  # type: ignore[arg-type]


def workers() -> list[int]:
    """Certificate workers that are children of this test process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()
                and b"argentic_edge.certs.worker" in cmdline
            ):
                found.append(int(entry))
    return found


def hanging_python(tmp_path: Path) -> str:
    """Stands in for the interpreter: a worker that never answers."""
    hang = tmp_path / "hang"
    hang.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    hang.chmod(0o755)
    return str(hang)


def test_the_running_appliance_never_maps_cryptography(tmp_path: Path) -> None:
    document = appliance_document(tmp_path / "data", certificates={"enabled": True})
    appliance = Appliance(tmp_path, document).start()
    try:
        status = appliance.status()["certificates"]
        assert status["error"] is None
        assert [c["name"] for c in status["certificates"]] == ["ca", "server"]
        assert (tmp_path / "data" / "certs" / "server.key").stat().st_mode & 0o777 == 0o600
        maps = Path(f"/proc/{appliance.pid}/maps").read_text()
        assert "cryptography" not in maps, "the appliance process loaded cryptography"
        assert "issued the server certificate" in appliance.log_tail(200), (
            "the worker's log is ours"
        )
    finally:
        appliance.stop()


async def test_the_worker_issues_and_describes_and_its_log_is_logged_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    warned: set[str] = set()
    with caplog.at_level(logging.INFO, logger="argentic_edge.certs.issuing"):
        infos = await cert_worker.refresh(files(tmp_path), warned)
    assert [info.name for info in infos] == ["ca", "server"]
    server = infos[1]
    assert server.path == tmp_path / "certs" / "server.pem" and f"{NODE}.local" in server.sans
    assert 396 < server.days_left < 397.1
    issued = [r for r in caplog.records if r.name == "argentic_edge.certs.issuing"]
    assert any("issued the server certificate" in r.getMessage() for r in issued)
    again = await cert_worker.refresh(files(tmp_path), warned)
    assert again[1].fingerprint_sha256 == server.fingerprint_sha256, "a good certificate is kept"


async def test_a_once_only_warning_is_not_repeated_by_the_next_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = CertStore(tmp_path / "elsewhere", "other").issue("homeassistant.local", client=False)
    bundle["key"].chmod(0o644)  # a brought key is not ours to chmod: the worker only says so
    certs = files(tmp_path, certfile=bundle["cert"], keyfile=bundle["key"])
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="argentic_edge.certs.issuing"):
        for _ in range(3):
            await cert_worker.refresh(certs, warned)
    exposed = [r.getMessage() for r in caplog.records if "readable by every user" in r.getMessage()]
    assert len(exposed) == 1 and str(bundle["key"]) in exposed[0]
    assert warned == {exposed[0]}


async def test_a_problem_the_worker_finds_is_a_cert_error(tmp_path: Path) -> None:
    certs = files(tmp_path)
    certs.directory.mkdir(parents=True)
    certs.ca_cert_path.write_text("not a certificate")
    certs.ca_key_path.write_text("not a key")
    with pytest.raises(CertError, match=f"{certs.ca_key_path}: not a PEM private key"):
        await cert_worker.refresh(certs, set())


async def test_a_worker_that_crashes_is_a_cert_error_naming_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(
        CertError, match=f"{tmp_path / 'certs'}: checking the certificates failed: exit status 1"
    ):
        await cert_worker.refresh(files(tmp_path), set())


async def test_a_worker_that_hangs_is_killed_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", hanging_python(tmp_path))
    with pytest.raises(
        CertError, match=re.escape("took over 0.5 s")
    ):  # within 30 s: killed, not waited for
        await asyncio.wait_for(cert_worker.refresh(files(tmp_path), set(), timeout=0.5), 30)
    assert workers() == [], "the hanging worker was left behind"


async def test_stopping_the_service_during_a_check_leaves_no_worker_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = CertManager(files(tmp_path), check_interval=3600)
    await manager.start()
    monkeypatch.setattr(sys, "executable", hanging_python(tmp_path))
    check = asyncio.create_task(manager.check())
    await wait_until(lambda: bool(workers()), timeout=15, what="the worker to start")
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(check, 30)  # the hanging worker is killed, not waited for
    await manager.stop()
    assert workers() == []
    assert manager.error is None and manager.server is not None, (
        "the first check's certificates stay"
    )


async def test_a_crashing_worker_is_counted_and_the_service_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = CertManager(files(tmp_path), check_interval=3600)
    await manager.start()
    served = manager.server
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", "/bin/false")
        await manager.check()
        assert manager.errors == 1 and "checking the certificates failed" in str(manager.error)
        patch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
        await manager.check()  # the worker cannot even be started
        assert manager.errors == 2 and "no-such-python" in str(manager.error)
    assert manager.server == served, "the certificate in use stays in use"
    await manager.check()
    await manager.stop()
    assert manager.error is None
