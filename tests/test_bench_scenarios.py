"""The synthetic loads of the scale benchmarks are what they claim to be (counts, never times)."""

from __future__ import annotations

import json
import time

from argentic_edge.bridge.routes import RouteTable
from argentic_edge.inspector.agents import MAX_AGENTS, MAX_TOOLS, AgentRegistry
from bench.bridge_routes import config
from bench.web_probe import AGENTS, TOOLS, messages


def test_route_scaling_table_sends_each_new_topic_through_its_one_route_only() -> None:
    cfg = config(1000, 1883)
    table = RouteTable(cfg.bridge.routes, cfg.bridge.mqtt)
    assert len(table.routes) == 1000
    assert len(table.subscriptions) == 999  # n1000/in/# and the 998 "both" fillers, none covered
    assert table.overlaps == []
    for index in range(50):
        out = table.outbound(f"n1000/out/x/{index}")
        assert [delivery.route.index for delivery in out] == [0]
        into = table.inbound(f"n1000/in/x/{index}").deliveries
        assert [delivery.route.index for delivery in into] == [1]
    assert table.outbound("n1000/elsewhere/x") == ()


def test_web_bench_messages_fill_the_agents_tables_as_argentic_traffic_would() -> None:
    registry = AgentRegistry()
    now = time.time()
    batch = messages()
    assert len(batch) == AGENTS + 2 * TOOLS
    for topic, document in batch:
        assert registry.record(topic, json.dumps(document).encode(), now)
    assert registry.malformed == 0 and registry.messages == len(batch)
    assert len(registry.agents) == min(AGENTS, MAX_AGENTS)
    assert len(registry.tools) == min(TOOLS, MAX_TOOLS)
    assert all(tool.state == "registered" for tool in registry.tools.values())
