"""``argentic-edge replay FILE [--speed X] [--loop]``: a recording put back on the bus with its
original timing (the gaps between the recorded times, divided by ``--speed``), once or until
stopped. Timing is kept against the start of each pass, so small delays never add up."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from argentic_edge.cli.pubsub import bus_command, bus_config, bus_endpoint
from argentic_edge.client.bus import connect_and_wait
from argentic_edge.inspector.recording import Recorded, RecordingError, load
from argentic_edge.topics import encode_frame

SUBSCRIBER_WAIT = 1.0  # seconds to wait for a first subscriber, so the start is not lost


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    summary = "put a recording back on the bus, timed"
    bus_command(subparsers, "replay", summary, cmd_replay, _arguments, backend=False)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a file written by `argentic-edge record`")
    parser.add_argument("--speed", type=float, default=1.0, help="2 plays twice as fast")
    parser.add_argument("--loop", action="store_true", help="start over until stopped")


def _play(socket: zmq.Socket[Any], messages: list[Recorded], speed: float, encoding: str) -> None:
    first = messages[0].time
    start = time.monotonic()
    for message in messages:
        delay = start + (message.time - first) / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        socket.send(encode_frame(message.topic, message.payload, encoding))


def cmd_replay(args: argparse.Namespace) -> int:
    if not args.speed > 0:
        sys.stderr.write(f"argentic-edge: replay: --speed must be above 0, got {args.speed}\n")
        return 1
    try:
        messages = load(args.file)
    except RecordingError as exc:
        sys.stderr.write(f"argentic-edge: replay: {exc}\n")
        return 1
    config = bus_config(args)
    context: zmq.Context[Any] = zmq.Context()
    socket = context.socket(zmq.XPUB)  # sees subscriptions arrive (a PUB would drop the start)
    socket.setsockopt(zmq.LINGER, 5000)
    socket.setsockopt(zmq.SNDHWM, 0)
    try:
        connect_and_wait(
            socket, bus_endpoint(args, config, False), config.messaging.connect_timeout / 1000
        )
        if socket.poll(int(SUBSCRIBER_WAIT * 1000)):
            socket.recv()
        while True:
            _play(socket, messages, args.speed, config.messaging.topic_encoding)
            if not args.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        socket.close()
        context.term()
    sys.stderr.write(f"replayed {len(messages)} message(s)\n")
    return 0
