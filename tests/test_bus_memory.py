"""A subscriber that never reads plus a flood of large frames: the appliance's memory stays within
the bound SECURITY.md states ("Bus memory"), measured from /proc on a real appliance process.

The bound is the documented worst case: every queue a message can wait in holds at most
``high_water_mark`` messages of at most ``max_message_size`` bytes. One publisher and one stuck
subscriber on the plain proxy make two queues: the publisher's inbound one and the subscriber's
outbound one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import zmq

from argentic_edge.config import BusConfig
from tests.support.appliance import Appliance, appliance_document, rss_kib
from tests.support.brokers import free_port

HIGH_WATER_MARK = 16
MAX_MESSAGE_SIZE = BusConfig().max_message_size  # the documented default, not written below
QUEUES = 2  # one publisher's inbound queue + one subscriber's outbound queue
FRAMES = 400
TOPIC = b"flood/big"


def frames_in(appliance: Appliance) -> int:
    counters = appliance.status()["bus"]["counters"]
    return int(counters["frontend"]["messages_in"])


def flood(context: zmq.Context[Any], appliance: Appliance, size: int) -> list[int]:
    """Send FRAMES frames of ``size`` bytes from a fresh publisher; RSS samples meanwhile, until
    the proxy has counted them all or has dropped the publisher (what libzmq does to a peer
    that sends a message above the maximum: the frames still queued go with the connection)."""
    pub = context.socket(zmq.XPUB)
    monitor = pub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    pub.setsockopt(zmq.SNDHWM, 0)  # the test side keeps every frame: the appliance must cope
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(appliance.bus_publish)
    try:
        deadline = time.monotonic() + 10
        while not (pub.poll(100) and pub.recv() == b"\x01" + TOPIC[:6]):
            assert time.monotonic() < deadline, "the stuck subscriber's subscription never came"
        before = frames_in(appliance)
        frame = TOPIC + b" " + b"x" * (size - len(TOPIC) - 1)  # pyzmq sends it without copies
        for _ in range(FRAMES):
            pub.send(frame)
        samples = [rss_kib(appliance.pid)]
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and frames_in(appliance) < before + FRAMES
            and not monitor.poll(0)
        ):
            samples.append(rss_kib(appliance.pid))
            time.sleep(0.05)
        samples.append(rss_kib(appliance.pid))
        return samples
    finally:
        pub.disable_monitor()
        monitor.close(linger=0)
        pub.close()


def test_a_stuck_subscriber_and_large_frames_keep_memory_within_the_documented_bound(
    tmp_path: Path,
) -> None:
    document = appliance_document(
        tmp_path / "data",
        messaging={
            "broker_address": "127.0.0.1",
            "port": free_port(),
            "backend_port": free_port(),
            "high_water_mark": HIGH_WATER_MARK,
        },
    )
    appliance = Appliance(tmp_path, document).start()
    context: zmq.Context[Any] = zmq.Context()
    stuck = context.socket(zmq.SUB)
    try:
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.LINGER, 0)
        stuck.subscribe(TOPIC[:6])
        stuck.connect(appliance.bus_subscribe)  # and never reads
        idle = rss_kib(appliance.pid)
        bound_kib = idle + HIGH_WATER_MARK * MAX_MESSAGE_SIZE * QUEUES // 1024

        oversized = flood(context, appliance, 4 * MAX_MESSAGE_SIZE)  # refused by libzmq
        just_fits = flood(context, appliance, MAX_MESSAGE_SIZE)  # queued, up to the HWM
        peak = max(oversized + just_fits)
        assert peak <= bound_kib, (
            f"RSS went from {idle} KiB to {peak} KiB, above the documented bound {bound_kib} KiB "
            f"(oversized frames: max {max(oversized)} KiB, frames at the limit: "
            f"max {max(just_fits)} KiB)"
        )
        code, health = appliance.health()
        assert code == 200, health
    finally:
        stuck.close()
        context.term()
        appliance.stop()
