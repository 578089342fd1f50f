"""Hostile frames on the bus: the proxy forwards bytes, clients count what they cannot parse."""

from __future__ import annotations

import os
import random
from pathlib import Path

import zmq

from argentic_edge.app import Edge
from argentic_edge.client.bus import Subscriber
from argentic_edge.config import parse_config
from argentic_edge.topics import TopicFilter
from tests.support.config import config_document


def hostile_frames(rng: random.Random) -> list[list[bytes]]:
    frames: list[list[bytes]] = [
        [b""],
        [b"no-space-at-all"],
        [b" leading-space {}"],
        [b"\xff\xfe\xfd bad-utf8"],
        [b"fuzz/" + b"x" * (4 * 1024 * 1024) + b" {}"],  # a 4 MiB topic
        [b"fuzz/multi {}", b"second part", b"third"],
        [b"fuzz/nul\x00topic {}"],
        [b"fuzz/ok \xff\xfe not json"],
    ]
    frames += [[b"fuzz/" + rng.randbytes(rng.randint(0, 200))] for _ in range(300)]
    frames += [[rng.randbytes(rng.randint(0, 64))] for _ in range(300)]
    return frames


async def test_hostile_frames_do_not_stop_the_bus(tmp_path: Path) -> None:
    config = parse_config(config_document(tmp_path / "data"), env={})
    async with Edge(config) as edge:
        bus = edge.services["bus"].bus
        context = zmq.Context()
        subscriber = Subscriber(
            context, bus.endpoints.subscribe, TopicFilter("fuzz/#"), high_water_mark=10_000
        )
        everything = context.socket(zmq.SUB)  # so every frame, not only fuzz/, crosses the proxy
        everything.setsockopt(zmq.RCVHWM, 0)
        everything.subscribe(b"")
        everything.connect(bus.endpoints.subscribe)
        pub = context.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.connect(bus.endpoints.publish)
        wanted = {b"\x01", b"\x01fuzz"}  # both reached the publisher: nothing is lost from now
        while wanted:  # (the appliance's own services subscribe too)
            assert pub.poll(5000), f"subscriptions {wanted} never arrived"
            wanted.discard(pub.recv())
        rng = random.Random(int.from_bytes(os.urandom(4), "big"))
        sent = hostile_frames(rng)
        for parts in sent:
            pub.send_multipart(parts)
        pub.send(b'fuzz/after {"type":"still-alive"}')

        alive = next(
            (
                message
                for message in subscriber.messages(timeout=5)
                if message.payload == b'{"type":"still-alive"}'
            ),
            None,
        )
        assert alive is not None and alive.topic == "fuzz/after", (
            "well-formed traffic still flows after the garbage"
        )
        assert subscriber.malformed >= 3, "frames without a topic are counted, not fatal"
        stats = bus.stats()
        assert stats is not None and stats.frontend.messages_in >= len(sent)
        pub.close(0)
        everything.close(0)
        subscriber.close()
        context.term()
        healthy, reasons = edge.health()
        assert healthy, reasons
