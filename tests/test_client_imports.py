"""What an agent pays for ``find_edge()``: the client must not load the federation's machinery."""

from __future__ import annotations

import json
import subprocess
import sys


def test_find_edge_loads_neither_the_bus_nor_the_zap_authenticator() -> None:
    code = (
        "import json, sys\n"
        "from argentic_edge.client.discover import find_edge\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(json.loads(done.stdout))
    assert "argentic_edge.client.discover" in modules, "the probe imported the client"
    loaded = sorted(
        name
        for name in modules
        if name == "zmq.auth"
        or name.startswith(("zmq.auth.", "argentic_edge.bus.federated", "argentic_edge.federation"))
    )
    assert loaded == []
