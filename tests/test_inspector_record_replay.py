"""``argentic-edge record`` and ``replay`` as a user runs them, against a running bus: a
recording holds what was sent, byte for byte, and replay puts it back with the original timing
(within 10 %), also faster with --speed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import zmq

from argentic_edge.app import Edge
from argentic_edge.client.bus import connect_and_wait
from argentic_edge.config import parse_config
from argentic_edge.inspector.recording import Recorded, load
from argentic_edge.topics import encode_frame
from tests.support.appliance import command, environment
from tests.support.config import config_document, write_yaml

SENT = [  # (seconds after the first, topic, payload)
    (0.0, "agent/status/info", b'{"type": "INFO", "source": "a"}'),
    (0.2, "agent/tools/call/t-1", b'{"type": "TASK", "task_id": "x"}'),
    (0.5, "sensors/raw", b"\xff\x00 binary \xfe"),
    (1.0, "agent/status/info", '{"type": "INFO", "text": "ünïcode"}'.encode()),
    (1.6, "logs/x", b""),
]


def start_recording(config: Path, output: Path, count: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command("record", "#", "-o", str(output), "-C", str(count), "--config", str(config)),
        stderr=subprocess.PIPE,
        env=environment(),
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith(b"recording #"), "record did not start"
    return process


def wait_for_subscriber(socket: zmq.Socket[Any], endpoint: str) -> None:
    connect_and_wait(socket, endpoint, 5.0)
    assert socket.poll(5000), "the recorder's subscription never reached the publisher"
    socket.recv()


def send_timed(endpoint: str) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 2000)
    try:
        wait_for_subscriber(socket, endpoint)
        start = time.monotonic()
        for offset, topic, payload in SENT:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            socket.send(encode_frame(topic, payload))
    finally:
        socket.close()
        context.term()


def finish(process: subprocess.Popen[bytes]) -> None:
    assert process.wait(timeout=20) == 0, process.stderr.read() if process.stderr else ""


def assert_timing(recorded: list[Recorded], expected: list[float]) -> None:
    offsets = [m.time - recorded[0].time for m in recorded]
    span = expected[-1]
    for got, want in zip(offsets, expected, strict=True):
        assert abs(got - want) <= 0.1 * span, (offsets, expected)


async def test_record_then_replay_round_trip(tmp_path: Path) -> None:
    document = config_document(tmp_path / "data")
    config = write_yaml(tmp_path / "edge.yaml", document)
    async with Edge(parse_config(document)):
        publish_endpoint = f"tcp://127.0.0.1:{document['messaging']['port']}"
        first = tmp_path / "first.jsonl"
        recording = start_recording(config, first, len(SENT))
        await asyncio.get_running_loop().run_in_executor(None, send_timed, publish_endpoint)
        await asyncio.get_running_loop().run_in_executor(None, finish, recording)
        original = load(first)
        assert [(m.topic, m.payload) for m in original] == [(t, p) for _, t, p in SENT]
        assert_timing(original, [offset for offset, _, _ in SENT])

        for speed in (1.0, 2.0):
            again = tmp_path / f"replayed-{speed}.jsonl"
            recording = start_recording(config, again, len(SENT))
            replay = await asyncio.create_subprocess_exec(
                *command("replay", str(first), "--speed", str(speed), "--config", str(config)),
                env=environment(),
                stderr=asyncio.subprocess.PIPE,
            )
            _, errors = await replay.communicate()
            assert replay.returncode == 0, errors
            assert errors.decode().strip().endswith(f"replayed {len(SENT)} message(s)")
            await asyncio.get_running_loop().run_in_executor(None, finish, recording)
            replayed = load(again)
            assert [(m.topic, m.payload) for m in replayed] == [(t, p) for _, t, p in SENT]
            assert_timing(replayed, [(m.time - original[0].time) / speed for m in original])


async def test_replay_names_a_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": 1, "topic": "a", "payload": "x"}\nnot json\n')
    replay = await asyncio.create_subprocess_exec(
        *command("replay", str(bad), "--port", "1"),
        env=environment(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await replay.communicate()
    assert replay.returncode == 1
    assert errors.decode() == "argentic-edge: replay: line 2: not JSON\n"
