"""A federated appliance exits within two seconds of SIGTERM (the README's promise), whether the
signal comes while its services are still starting or once it is linked with a peer: a real
pair in network namespaces, the appliance run as users run it, several times over."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.federation import Site, prepared_site
from tests.support.netns import netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]
RUNS = 4
BOUND = 2.0  # seconds; measured 0.2-0.5 s (before: 1.2-1.9 s when the signal came mid-start)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with prepared_site(tmp_path) as site:
        site.start("b", "node-b", ["a"])
        yield site


def _start(site: Site, log: Path) -> subprocess.Popen[bytes]:
    """node-a as the defaults run it: federation, certificates and the web on."""
    config = site.config("a", "node-a", ["b"])
    document = yaml.safe_load(config.read_text())
    document.update(web={"enabled": True, "port": 8099}, certificates={"enabled": True})
    config.write_text(yaml.safe_dump(document))
    command = ["-m", "argentic_edge", "--log-level", "debug", "run", "--config", str(config)]
    process = site.ns["a"].popen(
        site.ns["a"].python(*command),
        env={"ARGENTIC_EDGE_DATA_DIR": str(site.tmp / "a")},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    site.runs["a"] = process
    return process


def _exit_time(process: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, log.read_text()[-3000:]
    return elapsed


@pytest.mark.parametrize("moment", ["while starting", "linked"])
def test_a_federated_appliance_exits_promptly_on_sigterm(site: Site, moment: str) -> None:
    times, cut_short = [], 0
    for run in range(RUNS):
        log = site.tmp / f"a-{run}.log"
        process = _start(site, log)
        deadline = time.monotonic() + 30
        if moment == "while starting":  # the bus is up, the certificates' check is not done
            while "bus: publishers connect" not in log.read_text():
                assert time.monotonic() < deadline and process.poll() is None, log.read_text()
                time.sleep(0.01)
        else:
            site.nodes["b"].wait_peer("node-a", "linked", 30)
        times.append(_exit_time(process, log))
        cut_short += "stopping while still starting" in log.read_text()
    assert max(times) < BOUND, f"exit times {sorted(times)}"
    if moment == "while starting":  # the start was cut short, not waited for
        assert cut_short >= 1, "the signal never came during the start"
