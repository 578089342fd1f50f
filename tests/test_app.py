"""The composition root: a configuration change restarts what it touches and nothing else."""

from __future__ import annotations

from pathlib import Path

from argentic_edge.app import Edge
from argentic_edge.config import parse_config
from tests.support.config import config_document


async def test_apply_restarts_only_what_a_change_touches(tmp_path: Path) -> None:
    raw = config_document(tmp_path / "data")
    async with Edge(parse_config(raw, env={})) as edge:
        bus = edge.services["bus"]
        raw["discovery"] = {"enabled": False, "federation": {"trusted_peers": ["a" * 32]}}
        assert await edge.apply(parse_config(raw, env={})) == []
        assert edge.services["bus"] is bus, "a trust list change leaves agents connected"
        raw["messaging"] = {**raw["messaging"], "high_water_mark": 5000}
        assert await edge.apply(parse_config(raw, env={})) == ["bus", "agents", "inspector"]
        assert edge.config.messaging.high_water_mark == 5000


async def test_a_change_that_fails_to_start_restores_the_running_configuration(
    tmp_path: Path,
) -> None:
    import socket

    raw = config_document(tmp_path / "data")
    async with Edge(parse_config(raw, env={})) as edge:
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        bad = {
            **raw,
            "messaging": {
                **raw["messaging"],
                "port": holder.getsockname()[1],
                "connect_timeout": 200,
            },
        }
        try:
            try:
                await edge.apply(parse_config(bad, env={}))
            except Exception as exc:  # the bus names the taken port
                assert "already in use" in str(exc)
            else:
                raise AssertionError("a taken port must refuse the change")
        finally:
            holder.close()
        assert edge.config.messaging.port == raw["messaging"]["port"]
        healthy, reasons = edge.health()
        assert healthy, reasons
        assert set(edge.services) == {"bus", "agents", "inspector"}
